"""Routing rules of the exchange types, without any sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portask.broker.amqp.exchanges import HeadersExchange, TopicExchange
from portask.broker.amqp.exchanges.headers import headers_match
from portask.broker.amqp.queues import Queue


def _topic_regex_match(pattern: str, key: str) -> bool:
    """A second, independent definition of topic matching, on word lists."""
    pw = pattern.split(".") if pattern else []
    kw = key.split(".") if key else []

    def match(i: int, j: int) -> bool:
        if i == len(pw):
            return j == len(kw)
        if pw[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(kw) + 1))
        if j == len(kw):
            return False
        return (pw[i] == "*" or pw[i] == kw[j]) and match(i + 1, j + 1)

    return match(0, 0)


words = st.sampled_from(["a", "b", "*", "#"])
keys = st.lists(st.sampled_from(["a", "b", "c"]), max_size=5).map(".".join)
patterns = st.lists(words, max_size=5).map(".".join)


@given(pattern=patterns, key=keys)
def test_topic_trie_agrees_with_a_reference_matcher(pattern: str, key: str) -> None:
    exchange = TopicExchange("t")
    queue = Queue("q")
    exchange.bind(queue, pattern, {})
    assert (queue in exchange.route(key, lambda: None)) is _topic_regex_match(pattern, key)


def test_topic_unbind_prunes_and_stops_routing() -> None:
    exchange = TopicExchange("t")
    q1, q2 = Queue("q1"), Queue("q2")
    exchange.bind(q1, "a.#", {})
    exchange.bind(q2, "a.*", {})
    assert set(exchange.route("a.b", lambda: None)) == {q1, q2}
    exchange.unbind(q1, "a.#", {})
    assert list(exchange.route("a.b", lambda: None)) == [q2]
    exchange.unbind(q2, "a.*", {})
    assert list(exchange.route("a.b", lambda: None)) == []


@pytest.mark.parametrize(("arguments", "headers", "expected"), [
    ({"a": 1}, {"a": 1, "b": 2}, True),
    ({"a": 1, "b": 2}, {"a": 1}, False),
    ({"x-match": "any", "a": 1, "b": 2}, {"b": 2}, True),
    ({"x-match": "any", "a": 1}, {}, False),
    ({"a": None}, {"a": "anything"}, True),
    ({"x-match": "all", "x-key": 1}, {}, True),
    ({"x-match": "all-with-x", "x-key": 1}, {}, False),
    ({"x-match": "any-with-x", "x-key": 1}, {"x-key": 1}, True),
])
def test_headers_match(arguments: dict[str, object], headers: dict[str, object],
                       expected: bool) -> None:
    assert headers_match(arguments, headers) is expected


def test_headers_exchange_decodes_headers_lazily() -> None:
    exchange = HeadersExchange("h")
    calls = []

    def source() -> dict[str, object]:
        calls.append(1)
        return {"a": 1}

    assert list(exchange.route("", source)) == []
    assert calls == []  # no bindings, no decoding
    queue = Queue("q")
    exchange.bind(queue, "", {"a": 1})
    assert list(exchange.route("", source)) == [queue]
