"""Kafka's principals: ``User:<name>``, and ``ssl.principal.mapping.rules`` for TLS clients.

A TLS client's principal is made from its certificate's subject in RFC 2253 form
(``CN=app,OU=dev,O=acme``, most specific first, as Java's ``X500Principal.getName()``
writes it). The rules, as Kafka's ``SslPrincipalMapper`` reads them: a comma-separated
list of ``DEFAULT`` (the subject unchanged) and ``RULE:pattern/replacement/[LU]``, where
the first rule whose pattern matches the whole subject rewrites it (``$1`` refers to a
group; ``L``/``U`` lower- or upper-cases the result). A subject no rule matches cannot
log in, as in Kafka.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

USER = "User"
ANONYMOUS = "User:ANONYMOUS"

# One rule and the separator after it; a pattern or replacement may hold escaped
# slashes and commas, so the list is split by this rather than by ",".
_RULE = re.compile(
    r"\s*(?:(?P<default>DEFAULT)|RULE:(?P<pattern>(?:\\.|[^\\/])*)/"
    r"(?P<replacement>(?:\\.|[^\\/])*)/(?P<case>[LU]?))\s*(?:,|$)"
)
_JAVA_GROUP = re.compile(r"\$(\d+)")


class MappingRuleError(ValueError):
    """ssl.principal.mapping.rules that do not parse."""


class NoMatchingRule(LookupError):
    """No rule maps this subject: the client cannot log in."""


@dataclass(frozen=True, slots=True)
class MappingRule:
    pattern: re.Pattern[str] | None  # None: DEFAULT
    replacement: str = ""
    case: str = ""

    def apply(self, subject: str) -> str | None:
        if self.pattern is None:
            return subject
        if self.pattern.fullmatch(subject) is None:
            return None
        name = self.pattern.sub(self.replacement, subject)
        if self.case == "L":
            return name.lower()
        if self.case == "U":
            return name.upper()
        return name


def parse_rules(text: str) -> tuple[MappingRule, ...]:
    rules: list[MappingRule] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _RULE.match(text, pos)
        if m is None or m.end() == pos:
            raise MappingRuleError(
                f"cannot read a rule at {text[pos:]!r}: expected DEFAULT or "
                "RULE:pattern/replacement/[LU]"
            )
        pos = m.end()
        if m.group("default"):
            rules.append(MappingRule(None))
            continue
        try:
            pattern = re.compile(m.group("pattern"))
        except re.error as exc:
            raise MappingRuleError(f"pattern {m.group('pattern')!r}: {exc}") from None
        # Java writes group references as $1; Python's re.sub as \g<1>.
        replacement = _JAVA_GROUP.sub(r"\\g<\1>", m.group("replacement"))
        rules.append(MappingRule(pattern, replacement, m.group("case")))
    if not rules:
        raise MappingRuleError("no rule given (DEFAULT is the usual one)")
    return tuple(rules)


def principal_from_subject(subject: str, rules: tuple[MappingRule, ...]) -> str:
    """``User:<name>`` for a certificate subject; NoMatchingRule when no rule applies."""
    for rule in rules:
        name = rule.apply(subject)
        if name is not None:
            return f"{USER}:{name}"
    raise NoMatchingRule(f"no ssl.principal.mapping rule matches {subject!r}")
