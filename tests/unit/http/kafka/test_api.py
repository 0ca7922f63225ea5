"""The Kafka HTTP API's parsing and display rules, as pure functions."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portask.http.kafka.api import Call, KafkaApiError, payload, shown
from portask.http.server import Request


def _call(query: dict[str, str], body: bytes = b"") -> Call:
    return Call(Request("GET", "/kafka/v1/x", "", {}, body), {}, query)


@given(st.binary(max_size=200), st.sampled_from(["auto", "text", "json", "base64"]))
def test_shown_bytes_always_come_back_from_what_is_shown(data: bytes, fmt: str) -> None:
    value, encoding = shown(data, fmt)
    if encoding == "base64":
        assert base64.b64decode(value) == data
    elif encoding == "text":
        assert value.encode() == data
    else:
        assert encoding == "json" and json.loads(data) == value


def test_shown_picks_json_text_or_base64() -> None:
    assert shown(b'{"a": [1, 2]}', "auto") == ({"a": [1, 2]}, "json")
    assert shown(b"42", "auto") == ("42", "text")  # only objects and arrays are JSON in auto
    assert shown(b"42", "json") == (42, "json")
    assert shown(b"caf\xc3\xa9", "auto") == ("café", "text")
    assert shown(b"a\x00b", "auto") == (base64.b64encode(b"a\x00b").decode(), "base64")
    assert shown(b"{broken", "json") == ("{broken", "text")
    assert shown(None, "auto") == (None, None)
    assert shown(b"NaN", "json") == ("NaN", "text")
    deep = b"[" * 100_000 + b"]" * 100_000
    assert shown(deep, "auto") == (deep.decode(), "text")


def test_payload_encodings() -> None:
    assert payload("héllo", None, "value") == "héllo".encode()
    assert payload({"n": 1}, None, "value") == b'{"n":1}'
    assert payload("AAE=", "base64", "value") == b"\x00\x01"
    assert payload(None, "base64", "value") is None
    for value, encoding, field in [("%%", "base64", "value"), (5, "text", "key"),
                                   ("x", "utf-16", "key_encoding"), ("\ud800", "text", "value")]:
        with pytest.raises(KafkaApiError) as err:
            payload(value, encoding, field.removesuffix("_encoding"))
        assert (err.value.status, err.value.field) == (400, field)


@pytest.mark.parametrize(("raw", "field"), [("x", "n"), ("-1", "n"), ("1001", "n"),
                                            ("1.5", "n"), ("0x10", "n")])
def test_int_query_names_the_field(raw: str, field: str) -> None:
    with pytest.raises(KafkaApiError) as err:
        _call({"n": raw}).int_query("n", minimum=0, maximum=1000)
    assert (err.value.status, err.value.field) == (400, field)
    assert _call({}).int_query("n", 7) == 7
    assert _call({"n": ""}).int_query("n", 7) == 7


def test_bodies_must_be_json_objects_within_the_bound() -> None:
    assert _call({}, b"").body() == {}
    for raw in (b"[]", b"nul", b"\xff", b'"s"', b'{"a": NaN}', b"[" * 100_000):
        with pytest.raises(KafkaApiError) as err:
            _call({}, raw).body()
        assert (err.value.status, err.value.field) == (400, "body")
    with pytest.raises(KafkaApiError) as err:
        _call({}, b" " * ((2 << 20) + 1)).body()
    assert err.value.status == 413
