"""The management API's JSON, rates and sort: the fast paths give the same answers."""

from __future__ import annotations

import json
import random
from typing import Any

from portask.http.management import query
from portask.http.management.api import to_json
from portask.http.management.stats import Rates


def test_json_is_utf8_and_decodes_to_the_same_value() -> None:
    value = {"name": "café-名", "n": [1, 2.5, None, True], "arguments": {"x-k": "v"}}
    raw = to_json(value)
    assert "café-名".encode() in raw  # UTF-8, not \u escapes, as RabbitMQ writes it
    assert json.loads(raw) == value
    assert raw == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_json_escapes_a_lone_surrogate_instead_of_failing() -> None:
    raw = to_json({"name": "bad\udcff"})
    assert raw == b'{"name":"bad\\udcff"}'


def test_json_of_bytes_and_sets_as_before() -> None:
    assert json.loads(to_json({"b": b"ok", "s": (1, 2)})) == {"b": "ok", "s": [1, 2]}


def test_rates_are_computed_against_the_sample_and_zero_is_exact() -> None:
    now = [100.0]
    rates = Rates(clock=lambda: now[0])
    key = ("queue", "/", "q")
    rates.record([(key, {"publish": 10, "ack": 4})])
    now[0] = 102.0
    shown = rates.detailed(key, {"publish": 30, "ack": 4, "new": 7})
    assert shown == {"publish": 30, "publish_details": {"rate": 10.0},
                     "ack": 4, "ack_details": {"rate": 0.0},
                     "new": 7, "new_details": {"rate": 0.0}}
    into: dict[str, Any] = {"name": "q"}
    assert rates.detailed(key, {"publish": 11}, into=into, now=104.0) is into
    assert into == {"name": "q", "publish": 11, "publish_details": {"rate": 0.2}}


def test_default_sort_orders_as_erlang_terms() -> None:
    rng = random.Random(7)
    values: list[Any] = ["b", "a", "B", "é", "", 3, 1.5, None, True, False, {"k": 1}, [1]]
    items = [{"vhost": rng.choice(["/", "a", "Z"]), "name": rng.choice(values)}
             for _ in range(200)]
    items.append({"vhost": "/"})  # a missing key sorts as 0
    expected = sorted(items, key=lambda item: [query._rank(query._dotted(item, k))
                                               for k in ("vhost", "name")])
    assert query.shape(list(items), {}, ["vhost", "name"]) == expected
    # A dotted key goes through _dotted: only {"k": 1} has name.k, an item without a
    # name has no branch at all (RabbitMQ's [] default, after every number).
    by_dotted = query.shape(list(items), {"sort": "name.k"}, [])
    assert by_dotted == sorted(items, key=lambda item: [query._rank(query._dotted(item, "name.k"))])
    assert isinstance(by_dotted[-2]["name"], dict) and "name" not in by_dotted[-1]
