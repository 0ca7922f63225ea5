"""Octets quoted in error texts as RabbitMQ's Erlang formats them (~w, ~p, snippets)."""

from __future__ import annotations

import pytest

from portask.protocols.amqp import octets


def test_w_writes_every_octet_as_a_number() -> None:
    assert octets.erlang_w(b"") == "<<>>"
    assert octets.erlang_w(b"\x00\x3cab") == "<<0,60,97,98>>"


@pytest.mark.parametrize(("data", "expected"), [
    (b"", "<<>>"),
    (b"abc", '<<"abc">>'),
    (b'say "hi"\\', '<<"say \\"hi\\"\\\\">>'),
    (b"line\n", '<<"line\\n">>'),
    (b"\x00\x3c\x00", "<<0,60,0>>"),
    (b"caf\xc3\xa9", "<<99,97,102,195,169>>"),
])
def test_p_writes_printable_octets_as_a_string(data: bytes, expected: str) -> None:
    assert octets.erlang_p(data) == expected


def test_frame_octets_quotes_at_most_sixteen() -> None:
    assert octets.frame_octets(3, b"nowhere") == 'type 3, all octets = <<"nowhere">>'
    assert (octets.frame_octets(3, b"0123456789abcdefXYZ")
            == 'type 3, first 16 octets = <<"0123456789abcdef">>')
    assert octets.frame_octets(8, b"") == "type 8, all octets = <<>>"
