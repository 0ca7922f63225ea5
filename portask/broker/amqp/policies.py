"""Policies: queue settings applied by name pattern, as RabbitMQ 3.10 applies them.

A policy has a vhost, a name, a regular expression searched for in queue or exchange
names (not anchored, as ``re:run`` matches), what it applies to (``queues``,
``exchanges`` or ``all``), a priority and a definition. Of the policies that match an
object, the one with the highest priority is its policy (``rabbit_policy:match``); its
keys are combined with the queue's x-arguments as ``rabbit_amqqueue_process:
process_args_policy`` does: for ``expires``, ``message-ttl``, ``max-length`` and
``max-length-bytes`` the smaller of the two wins, for every other key the queue's own
argument wins and the policy fills in only what the queue did not declare.

The keys applied here: message-ttl, expires, max-length, max-length-bytes, overflow,
dead-letter-exchange, dead-letter-routing-key. Every other key RabbitMQ's validators
accept (queue-mode, ha-*, alternate-exchange, delivery-limit, ...) is validated the same
way, kept and exported, but changes nothing in Portask.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from portask.broker.amqp.queue_args import QueueArgs, parse_max_age

APPLY_TO = ("all", "exchanges", "queues")
# Keys whose smaller value wins over the queue's argument (res_min); others: res_arg.
_MIN_KEYS = {"expires": "expires", "message-ttl": "message_ttl",
             "max-length": "max_length", "max-length-bytes": "max_length_bytes"}
_ARG_KEYS = {"overflow": "overflow", "dead-letter-exchange": "dead_letter_exchange",
             "dead-letter-routing-key": "dead_letter_routing_key"}
APPLIED_KEYS = frozenset(_MIN_KEYS) | frozenset(_ARG_KEYS)


class InvalidPolicy(ValueError):
    """A policy RabbitMQ would refuse; the message is RabbitMQ's reason."""


def _erl(value: Any) -> str:
    """A JSON value as Erlang's ``~p`` prints it in RabbitMQ's validation texts."""
    if isinstance(value, str):
        return f'<<"{value}">>'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_erl(v) for v in value) + "]"
    if isinstance(value, dict):
        return "#{" + ",".join(f"{_erl(k)} => {_erl(v)}" for k, v in value.items()) + "}"
    return str(value)


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _integer(minimum: int, what: str) -> Any:
    def check(value: Any) -> str | None:
        return None if _is_int(value, minimum) else f"{_erl(value)} is not a valid {what}"
    return check


def _one_of(choices: tuple[Any, ...], what: str) -> Any:
    def check(value: Any) -> str | None:
        return None if value in choices and not isinstance(value, bool) \
            else f"{_erl(value)} is not a valid {what}"
    return check


def _string(what: str) -> Any:
    def check(value: Any) -> str | None:
        return None if isinstance(value, str) else f"{_erl(value)} is not a valid {what}"
    return check


def _max_age(value: Any) -> str | None:
    try:
        parse_max_age(value)
    except Exception:
        return f"{_erl(value)} is not a valid max age"
    return None


def _anything(_value: Any) -> str | None:
    return None


# rabbit_policies:validate_policy0 and the mirroring validators (rabbit_mirror_queue_misc,
# accepted and ignored: one node has nothing to mirror to), with RabbitMQ's texts.
_VALIDATORS: dict[str, Any] = {
    "alternate-exchange": _string("alternate exchange name"),
    "dead-letter-exchange": _string("dead letter exchange name"),
    "dead-letter-routing-key": _string("dead letter routing key"),
    "dead-letter-strategy": _one_of(("at-most-once", "at-least-once"),
                                    "dead letter strategy"),
    "message-ttl": _integer(0, "message TTL"),
    "expires": _integer(1, "queue expiry"),
    "max-length": _integer(0, "maximum length"),
    "max-length-bytes": _integer(0, "maximum length in bytes"),
    "max-in-memory-length": _integer(0, "maximum memory in bytes"),
    "max-in-memory-bytes": _integer(0, "maximum memory in bytes"),
    "queue-mode": _one_of(("default", "lazy"), "queue-mode value"),
    "queue-version": _one_of((1, 2), "queue-version value"),
    "overflow": _one_of(("drop-head", "reject-publish", "reject-publish-dlx"),
                        "overflow value"),
    "delivery-limit": _integer(0, "delivery limit"),
    "max-age": _max_age,
    "queue-leader-locator": _one_of(("client-local", "balanced", "random", "least-leaders"),
                                    "queue leader locator value"),
    "initial-cluster-size": _integer(0, "cluster size"),
    "stream-max-segment-size-bytes": _integer(0, "segment size"),
    "queue-master-locator": _one_of(("min-masters", "client-local", "random"),
                                    "queue master locator"),
    "ha-mode": _one_of(("all", "exactly", "nodes"), "ha-mode value"),
    "ha-params": _anything,
    "ha-sync-mode": _one_of(("automatic", "manual"), "ha-sync-mode value"),
    "ha-sync-batch-size": _integer(1, "ha-sync-batch-size value"),
    "ha-promote-on-shutdown": _one_of(("when-synced", "always"),
                                      "ha-promote-on-shutdown value"),
    "ha-promote-on-failure": _one_of(("when-synced", "always"),
                                     "ha-promote-on-failure value"),
}
KNOWN_KEYS = frozenset(_VALIDATORS)


@dataclass(frozen=True)
class Policy:
    vhost: str
    name: str
    pattern: str
    definition: dict[str, Any]
    priority: int = 0
    apply_to: str = "all"
    _regex: re.Pattern[str] = field(compare=False, repr=False,
                                    default=re.compile(""))

    def applies_to(self, kind: str, name: str) -> bool:
        """kind: ``queue`` or ``exchange`` (rabbit_policy:matches_type and the pattern)."""
        if self.apply_to != "all" and self.apply_to != kind + "s":
            return False
        return self._regex.search(name) is not None

    def as_json(self) -> dict[str, Any]:
        """As RabbitMQ's management API and definitions files show a policy."""
        return {"vhost": self.vhost, "name": self.name, "pattern": self.pattern,
                "apply-to": self.apply_to, "definition": dict(self.definition),
                "priority": self.priority}


def parse_policy(vhost: str, name: str, body: dict[str, Any]) -> Policy:
    """A policy from its JSON form (management API body or definitions file entry);
    InvalidPolicy with RabbitMQ's reason when it would refuse it."""
    if not name:
        raise InvalidPolicy("a policy needs a name")
    pattern = body.get("pattern")
    if not isinstance(pattern, str):
        raise InvalidPolicy("pattern not found" if pattern is None
                            else f"pattern {_erl(pattern)} is not a string")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise InvalidPolicy(f"pattern {_erl(pattern)} is not a valid regular expression: "
                            f"{exc}") from None
    priority = body.get("priority", 0)
    if isinstance(priority, str):
        try:
            priority = int(priority)
        except ValueError:
            raise InvalidPolicy(f"\"{priority}\" priority must be a number") from None
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidPolicy(f"{_erl(priority)} priority must be a number")
    apply_to = body.get("apply-to", "all")
    if apply_to not in APPLY_TO:
        raise InvalidPolicy(f"apply-to '{apply_to}' unrecognised; should be 'queues', "
                            "'exchanges' or 'all'")
    definition = body.get("definition")
    if definition is None:
        raise InvalidPolicy("definition not found")
    if not isinstance(definition, dict):
        raise InvalidPolicy(f"definition must be a dictionary: {_erl(definition)}")
    if not definition:
        raise InvalidPolicy("no policy provided")
    unknown = [k for k in definition if k not in _VALIDATORS]
    if unknown:
        terms = ",".join(f"{{{_erl(k)},{_erl(definition[k])}}}" for k in unknown)
        raise InvalidPolicy(f"[{terms}] are not recognised policy settings")
    for key, value in definition.items():
        problem = _VALIDATORS[key](value)
        if problem is not None:
            raise InvalidPolicy(problem)
    return Policy(vhost, name, pattern, dict(definition), priority, apply_to, regex)


def winning(policies: list[Policy], kind: str, name: str) -> Policy | None:
    """The policy of a queue or exchange: the highest priority among those that match
    (ties: the first by name, where RabbitMQ's order is that of its table)."""
    best: Policy | None = None
    for policy in policies:
        if policy.applies_to(kind, name) and (
                best is None or policy.priority > best.priority
                or (policy.priority == best.priority and policy.name < best.name)):
            best = policy
    return best


def effective_args(declared: QueueArgs, arguments: dict[str, Any],
                   policy: Policy | None) -> QueueArgs:
    """The settings a queue acts on: its declared x-arguments combined with its policy
    (``process_args_policy``: numeric limits take the smaller, otherwise the argument)."""
    if policy is None:
        return declared
    changes: dict[str, Any] = {}
    definition = policy.definition
    for key, attribute in _MIN_KEYS.items():
        value = definition.get(key)
        if value is None:
            continue
        own = getattr(declared, attribute)
        changes[attribute] = value if own is None else min(own, value)
    for key, attribute in _ARG_KEYS.items():
        value = definition.get(key)
        if value is not None and "x-" + key not in arguments:
            changes[attribute] = value
    return dataclasses.replace(declared, **changes) if changes else declared
