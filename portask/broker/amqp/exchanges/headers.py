"""Headers exchange: a binding's arguments are matched against the message headers.

``x-match`` chooses ``all`` (the default) or ``any``; the ``-with-x`` variants also
compare arguments whose names start with ``x-``, which the plain variants skip. A
binding argument with no value (void) matches when the header is present at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from portask.broker.amqp.exchanges.base import Binding, Destination, Exchange, HeadersSource

_MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")
_ABSENT = object()


def match_mode(arguments: dict[str, Any]) -> str | None:
    """The binding's x-match mode, or None when the value is not one of the four known."""
    mode = arguments.get("x-match", "all")
    if isinstance(mode, bytes):
        mode = mode.decode(errors="replace")
    return mode if mode in _MATCH_MODES else None


def headers_match(arguments: dict[str, Any], headers: dict[str, Any]) -> bool:
    mode = match_mode(arguments) or "all"
    with_x = mode.endswith("-with-x")
    want_all = mode.startswith("all")
    matched_any = False
    for name, expected in arguments.items():
        if name == "x-match" or (not with_x and name.startswith("x-")):
            continue
        actual = headers.get(name, _ABSENT)
        ok = actual is not _ABSENT and (expected is None or actual == expected)
        if ok:
            matched_any = True
            if not want_all:
                return True
        elif want_all:
            return False
    return want_all or matched_any


class HeadersExchange(Exchange):
    kind = "headers"

    def __init__(self, name: str, **flags: object) -> None:
        super().__init__(name, **flags)  # type: ignore[arg-type]
        self._bindings: tuple[Binding, ...] = ()

    def route(self, routing_key: str, headers: HeadersSource) -> Iterable[Destination]:
        if not self._bindings:
            return ()
        message_headers = headers() or {}
        found: dict[int, Destination] = {}
        for binding in self._bindings:
            if headers_match(binding.arguments, message_headers):
                found[id(binding.destination)] = binding.destination
        return found.values()

    def _index_add(self, binding: Binding) -> None:
        self._bindings = tuple(self.bindings.values())

    def _index_remove(self, binding: Binding) -> None:
        self._bindings = tuple(self.bindings.values())
