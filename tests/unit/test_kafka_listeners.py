"""Parsing kafka.listeners, kafka.advertised_listeners and
kafka.listener_security_protocol_map as Kafka reads listeners, advertised.listeners and
listener.security.protocol.map."""

from __future__ import annotations

import pytest

from portask.kafka_listeners import KafkaListenerError, KafkaListenerSpec, parse, render


def test_names_hosts_ports_advertised_addresses_and_protocols() -> None:
    specs = parse("internal://0.0.0.0:9092, HOST://:29092,SSL://[::1]:9093",
                  "INTERNAL://portask:9092,HOST://localhost:29092",
                  "INTERNAL:PLAINTEXT,HOST:SASL_PLAINTEXT", "127.0.0.1")
    assert specs == [
        KafkaListenerSpec("INTERNAL", "0.0.0.0", 9092, "PLAINTEXT", "portask", 9092),
        KafkaListenerSpec("HOST", "127.0.0.1", 29092, "SASL_PLAINTEXT", "localhost", 29092),
        KafkaListenerSpec("SSL", "::1", 9093, "SSL"),
    ]
    assert [(s.listener_name, s.tls, s.sasl) for s in specs] == [
        ("kafka_internal", False, False), ("kafka_host", False, True), ("kafka_ssl", True, False)]
    assert render([(s.name, s.security_protocol, s.host, s.port) for s in specs]) == (
        "INTERNAL://0.0.0.0:9092,HOST://127.0.0.1:29092,SSL://[::1]:9093")


def test_empty_means_the_listeners_of_kafka_port() -> None:
    assert parse("", "", "", "127.0.0.1") == []


@pytest.mark.parametrize(("listeners", "advertised", "protocols", "message"), [
    ("A://h:1,A://h:2", "", "A:PLAINTEXT", "kafka.listeners: listener name 'A' appears twice"),
    ("A://h:1,B://h:1", "", "A:PLAINTEXT,B:PLAINTEXT", "uses a port twice"),
    ("A://h:70000", "", "A:PLAINTEXT", "kafka.listeners: port '70000' in 'A://h:70000'"),
    ("1A://h:1", "", "", "kafka.listeners: listener name '1A'"),
    ("A://h:1", "A://0.0.0.0:1", "A:PLAINTEXT", "which no client can reach"),
    ("A://h:1", "A://x:0", "A:PLAINTEXT", "kafka.advertised_listeners: port '0'"),
    ("A://h:1", "", "A", "kafka.listener_security_protocol_map: 'A' in 'A' is not NAME:PROTOCOL"),
    ("A://h:1", "", "A:PLAINTEXT,B:SSL", "maps listener 'B', which kafka.listeners"),
    ("", "A://x:1", "", "kafka.advertised_listeners: 'A://x:1' needs kafka.listeners"),
])
def test_refusals_name_the_key_and_the_value(listeners: str, advertised: str,
                                             protocols: str, message: str) -> None:
    with pytest.raises(KafkaListenerError) as err:
        parse(listeners, advertised, protocols, "127.0.0.1")
    assert message in str(err.value)
