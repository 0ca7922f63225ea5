"""Every version of every API that ApiVersions advertises gets a request and an answer."""

from __future__ import annotations

from tests.broker_process import BrokerProcess
from tests.integration.kafka.wire_client import (
    WireClient,
    encode_request,
    request_type,
    request_types,
)
from tests.unit.protocols.kafka.kio_values import sample

API_VERSIONS = 18
# Kafka answers -1 for the start time of a transaction that has not begun; kio's reader
# refuses negative timestamps, so that answer is checked by its framing only.
DESCRIBE_TRANSACTIONS = 65


def _advertised(port: int) -> list[tuple[int, int]]:
    client = WireClient(port)
    try:
        m = request_types(API_VERSIONS, 3)
        client.send(
            encode_request(
                m.ApiVersionsRequest(client_software_name="t", client_software_version="1"), 1
            )
        )
        _, resp = client.read_response(API_VERSIONS, 3)
    finally:
        client.close()
    return [
        (a.api_key, v) for a in resp.api_keys for v in range(a.min_version, a.max_version + 1)
    ]


def test_every_advertised_version_is_answered(kafka_broker: BrokerProcess) -> None:
    advertised = _advertised(kafka_broker.kafka_port)
    assert len(advertised) > 150
    failures = []
    for key, version in advertised:
        client = WireClient(kafka_broker.kafka_port, timeout=15)
        try:
            client.send(encode_request(sample(request_type(key, version)), 7))
            if key == DESCRIBE_TRANSACTIONS:
                cid = int.from_bytes(client.read_frame()[:4], "big")
            else:
                cid, _ = client.read_response(key, version)
            if cid != 7:
                failures.append((key, version, f"correlation id {cid}"))
        except Exception as exc:
            failures.append((key, version, repr(exc)))
        finally:
            client.close()
    assert failures == []
    assert "Traceback" not in kafka_broker.stderr_text()
