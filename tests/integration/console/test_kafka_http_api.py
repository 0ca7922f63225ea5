"""The Kafka HTTP API (/kafka/v1) against a real broker, checked with real Kafka and
AMQP clients on the other side: what a client wrote is what HTTP reads, and what HTTP
writes is what a client reads."""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid

import pika
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.broker_process import BrokerProcess
from tests.integration.console.conftest import Http
from tests.integration.kafka.clients import (
    bootstrap,
    consume_aiokafka,
    consume_kafka_python,
    create_topic,
)
from tests.integration.kafka.group_clients import GroupMember, wait_for


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _produce(port: int, topic: str, records: list[tuple[int, bytes | None, bytes, list]],
             **conf: object) -> None:
    producer = Producer({"bootstrap.servers": bootstrap(port), "linger.ms": 5, **conf})
    for partition, key, value, headers in records:
        producer.produce(topic, value=value, key=key, headers=headers, partition=partition)
    assert producer.flush(15) == 0


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_records_produced_by_confluent_read_back_decoded_from_any_codec(
        site_broker: BrokerProcess, http: Http, codec: str) -> None:
    topic = _name("read")
    create_topic(site_broker.kafka_port, topic, partitions=2)
    doc = {"order": 7, "items": ["a", "b"]}
    _produce(site_broker.kafka_port, topic, [
        (0, b"k-json", json.dumps(doc).encode(), [("trace", b"t-1"), ("bin", b"\xff\x00")]),
        (0, None, "plain text é".encode(), []),
        (0, b"\x00\x01", b"\xfe\xff binary", [("empty", None)]),
        (1, b"other", b"in partition one", []),
    ], **{"compression.type": codec})
    answer = http.get(f"/kafka/v1/topics/{topic}/records?partition=0&offset=0")
    records = answer["records"]
    assert [r["offset"] for r in records] == [0, 1, 2]
    first, second, third = records
    assert (first["key"], first["key_encoding"]) == ("k-json", "text")
    assert (first["value"], first["value_encoding"]) == (doc, "json")
    assert first["headers"] == [
        {"key": "trace", "value": "t-1", "value_encoding": "text"},
        {"key": "bin", "value": base64.b64encode(b"\xff\x00").decode(),
         "value_encoding": "base64"}]
    assert first["timestamp_type"] == "CreateTime"
    assert abs(first["timestamp"] - time.time() * 1000) < 60_000
    assert (second["key"], second["value"], second["value_encoding"]) == \
        (None, "plain text é", "text")
    assert (third["key"], third["key_encoding"]) == (base64.b64encode(b"\x00\x01").decode(),
                                                     "base64")
    assert base64.b64decode(third["value"]) == b"\xfe\xff binary"
    assert third["headers"] == [{"key": "empty", "value": None, "value_encoding": None}]
    # format=base64 shows every value as base64, JSON ones too.
    raw = http.get(f"/kafka/v1/topics/{topic}/records?partition=0&offset=0&limit=1"
                   "&format=base64")["records"]
    assert json.loads(base64.b64decode(raw[0]["value"])) == doc
    # Without a partition: every partition, in timestamp order.
    every = http.get(f"/kafka/v1/topics/{topic}/records")["records"]
    assert sorted((r["partition"], r["offset"]) for r in every) == \
        [(0, 0), (0, 1), (0, 2), (1, 0)]


def test_read_by_offset_timestamp_and_last_n(site_broker: BrokerProcess, http: Http) -> None:
    topic = _name("pos")
    create_topic(site_broker.kafka_port, topic, partitions=1)
    _produce(site_broker.kafka_port, topic,
             [(0, None, f"early-{i}".encode(), []) for i in range(5)])
    time.sleep(0.05)
    cut = int(time.time() * 1000)
    time.sleep(0.05)
    _produce(site_broker.kafka_port, topic,
             [(0, None, f"late-{i}".encode(), []) for i in range(3)])
    base = f"/kafka/v1/topics/{topic}/records?partition=0"
    assert [r["value"] for r in http.get(base + "&last=2")["records"]] == ["late-1", "late-2"]
    assert [r["value"] for r in http.get(base + f"&timestamp={cut}")["records"]] == \
        ["late-0", "late-1", "late-2"]
    assert [r["offset"] for r in http.get(base + "&offset=3&limit=2")["records"]] == [3, 4]
    assert http.get(base + "&offset=8")["records"] == []
    # The byte budget bounds an answer: past the first record, 64 bytes per record
    # plus keys and values.
    assert len(http.get(base + "&max_bytes=140")["records"]) == 2
    summary = http.get(f"/kafka/v1/topics/{topic}")
    assert summary["partitions"][0]["high_watermark"] == 8
    assert summary["partitions"][0]["size_bytes"] > 0


def test_a_record_produced_over_http_reaches_kafka_python_and_aiokafka(
        site_broker: BrokerProcess, http: Http) -> None:
    topic = _name("produce")
    create_topic(site_broker.kafka_port, topic, partitions=3)
    sent = [
        http.post(f"/kafka/v1/topics/{topic}/records",
                  {"partition": 1, "key": "user-1", "value": {"n": 1},
                   "headers": {"source": "http"}}),
        http.post(f"/kafka/v1/topics/{topic}/records",
                  {"partition": 1, "key": None,
                   "value": base64.b64encode(b"\x00raw\xff").decode(),
                   "value_encoding": "base64",
                   "headers": [{"key": "h", "value": "djE=", "value_encoding": "base64"}]}),
    ]
    assert [(s["partition"], s["offset"]) for s in sent] == [(1, 0), (1, 1)]
    for consume in (consume_kafka_python, consume_aiokafka):
        got = sorted(consume(site_broker.kafka_port, topic, 3, 2), key=lambda m: m.offset)
        assert [(m.partition, m.offset, m.key, m.value, m.headers) for m in got] == [
            (1, 0, b"user-1", b'{"n":1}', (("source", b"http"),)),
            (1, 1, None, b"\x00raw\xff", (("h", b"v1"),)),
        ], consume.__name__
    # Keyed records without a partition go where Java's default partitioner sends them.
    placed = http.post(f"/kafka/v1/topics/{topic}/records", {"key": "user-1", "value": "x"})
    again = http.post(f"/kafka/v1/topics/{topic}/records", {"key": "user-1", "value": "y"})
    assert placed["partition"] == again["partition"]


def test_topics_created_altered_and_deleted_over_http_as_kafka_admin_sees_them(
        site_broker: BrokerProcess, http: Http) -> None:
    topic = _name("admin")
    status, created = http.call("POST", "/kafka/v1/topics", {
        "name": topic, "partitions": 4, "configs": {"retention.ms": 3600000}})
    assert status == 201 and created["partitions"][3]["partition"] == 3
    assert created["configs"]["retention.ms"] == {"value": "3600000", "source": "topic"}
    admin = AdminClient({"bootstrap.servers": bootstrap(site_broker.kafka_port)})
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 4
    status, body = http.call("POST", "/kafka/v1/topics", {"name": topic, "partitions": 1})
    assert (status, body["error"]) == (409, "topic_exists")

    configs = http.call("PATCH", f"/kafka/v1/topics/{topic}/configs",
                        {"configs": {"cleanup.policy": "compact", "retention.ms": None}})[1]
    assert configs["cleanup.policy"] == {"value": "compact", "source": "topic"}
    assert configs["retention.ms"]["source"] == "default"
    described = admin.describe_configs([ConfigResource("topic", topic)])
    entries = next(iter(described.values())).result(10)
    assert entries["cleanup.policy"].value == "compact"
    assert entries["retention.ms"].is_default
    status, body = http.call("PATCH", f"/kafka/v1/topics/{topic}/configs",
                             {"configs": {"retention.ms": "soon"}})
    assert (status, body["field"]) == (400, "configs")
    assert "retention.ms" in body["message"]
    # A compacted topic refuses keyless records, over HTTP as over Kafka.
    status, body = http.call("POST", f"/kafka/v1/topics/{topic}/records", {"value": "v"})
    assert (status, body["field"]) == (400, "key")

    assert any(t["name"] == topic for t in http.get("/kafka/v1/topics"))
    assert http.call("DELETE", f"/kafka/v1/topics/{topic}")[0] == 204
    assert http.call("GET", f"/kafka/v1/topics/{topic}")[0] == 404
    assert topic not in admin.list_topics(timeout=10).topics


def test_group_lag_members_and_an_offset_reset_a_real_group_resumes_from(
        site_broker: BrokerProcess, http: Http) -> None:
    port = site_broker.kafka_port
    topic, group = _name("lag"), _name("g")
    create_topic(port, topic, partitions=2)
    _produce(port, topic, [(i % 2, None, f"m{i}".encode(), []) for i in range(10)])
    member = GroupMember("confluent", port, group, topic).start()
    try:
        assert wait_for(lambda: len(member.values()) == 10, 20), member.values()
        _produce(port, topic, [(0, None, b"unread", []) for _ in range(3)])

        def shown() -> dict:
            return http.get(f"/kafka/v1/groups/{group}")

        assert wait_for(lambda: shown()["state"] == "Stable" and shown()["lag"] is not None,
                        15)
        detail = shown()
        assert detail["protocol_type"] == "consumer"
        (m,) = detail["members"]
        assert m["subscription"] == [topic]
        assert m["assignment"] == [{"topic": topic, "partitions": [0, 1]}]
        by_partition = {o["partition"]: o for o in detail["offsets"]}
        assert by_partition[0]["high_watermark"] == 8
        assert by_partition[0]["member_id"] == m["member_id"]
        listed = {g["group_id"]: g for g in http.get("/kafka/v1/groups")}
        assert listed[group]["members"] == 1

        status, body = http.call("POST", f"/kafka/v1/groups/{group}/offsets/reset",
                                 {"to": "earliest"})
        assert (status, body["error"]) == (409, "group_not_empty")
        status, body = http.call("DELETE", f"/kafka/v1/groups/{group}")
        assert (status, body["error"]) == (409, "group_not_empty")
    finally:
        member.stop()
    assert member.error is None

    assert wait_for(lambda: http.get(f"/kafka/v1/groups/{group}")["state"] == "Empty", 15)
    reset = http.post(f"/kafka/v1/groups/{group}/offsets/reset",
                      {"to": "offset", "offset": 6, "topic": topic, "partitions": [0]})
    assert reset["offsets"] == [{"topic": topic, "partition": 0, "offset": 6}]
    offsets = {o["partition"]: o for o in http.get(f"/kafka/v1/groups/{group}")["offsets"]}
    assert (offsets[0]["committed"], offsets[0]["lag"]) == (6, 2)

    # A consumer of the group starts from the reset offsets: 6 and 7 of partition 0,
    # nothing of partition 1 (its committed offset is at the end).
    consumer = Consumer({"bootstrap.servers": bootstrap(port), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + 20
    try:
        while len(got) < 2 and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append((msg.partition(), msg.offset()))
        more = consumer.poll(1.0)
    finally:
        consumer.close()
    assert got == [(0, 6), (0, 7)]
    assert more is None

    # Latest and timestamp resets cover every committed partition.
    latest = http.post(f"/kafka/v1/groups/{group}/offsets/reset", {"to": "latest"})
    assert {(o["partition"], o["offset"]) for o in latest["offsets"]} == {(0, 8), (1, 5)}
    future = http.post(f"/kafka/v1/groups/{group}/offsets/reset",
                       {"to": "timestamp", "timestamp": int(time.time() * 1000) + 60_000})
    assert {(o["partition"], o["offset"]) for o in future["offsets"]} == {(0, 8), (1, 5)}
    assert http.call("DELETE", f"/kafka/v1/groups/{group}")[0] == 204
    assert http.call("GET", f"/kafka/v1/groups/{group}")[0] == 404


def test_a_stream_queue_reads_like_a_partition(site_broker: BrokerProcess, http: Http) -> None:
    queue = _name("stream")
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1",
                                                             site_broker.amqp_port))
    try:
        ch = conn.channel()
        ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "stream"})
        for i in range(4):
            ch.basic_publish("", queue, f"event-{i}".encode(), pika.BasicProperties(
                headers={"n": i}, content_type="text/plain"))
        ch.queue_declare(_name("classic"))
    finally:
        conn.close()
    base = f"/kafka/v1/streams/%2F/{queue}/records"
    assert wait_for(lambda: len(http.get(base)["records"]) == 4, 10)
    first = http.get(base + "?limit=1")["records"][0]
    assert (first["offset"], first["value"], first["routing_key"]) == (0, "event-0", queue)
    assert first["properties"]["headers"] == {"n": 0}
    assert first["properties"]["content_type"] == "text/plain"
    assert [r["value"] for r in http.get(base + "?last=2")["records"]] == ["event-2",
                                                                          "event-3"]
    assert [r["offset"] for r in http.get(base + "?offset=1&limit=2")["records"]] == [1, 2]
    assert http.call("GET", f"/kafka/v1/streams/%2F/{_name('none')}/records")[0] == 404
    # A Kafka topic's partition is a stream over AMQP, but read here as the topic.
    topic = _name("topic")
    create_topic(site_broker.kafka_port, topic, partitions=1)
    status, answer = http.call("GET", f"/kafka/v1/streams/%2F/{topic}/records")
    assert status == 400 and "Kafka topic" in str(answer)


@pytest.mark.parametrize(("path", "field"), [
    ("?offset=abc", "offset"), ("?offset=-5", "offset"), ("?last=0", "last"),
    ("?last=100000", "last"), ("?timestamp=1e9", "timestamp"), ("?limit=0", "limit"),
    ("?partition=9", "partition"), ("?format=xml", "format"),
    ("?offset=99999999999999999999", "offset"), ("?offset=1&last=2", "last"),
])
def test_bad_read_parameters_are_400_naming_the_field(
        site_broker: BrokerProcess, http: Http, path: str, field: str) -> None:
    topic = "bad-params"
    if http.call("GET", f"/kafka/v1/topics/{topic}")[0] == 404:
        http.post("/kafka/v1/topics", {"name": topic, "partitions": 1})
    status, body = http.call("GET", f"/kafka/v1/topics/{topic}/records{path}")
    assert status == 400, body
    assert (body["error"], body["field"]) == ("invalid_request", field)


def test_hostile_bodies_are_refused_with_json_errors(site_broker: BrokerProcess,
                                                      http: Http) -> None:
    topic = _name("hostile")
    http.post("/kafka/v1/topics", {"name": topic, "partitions": 1})
    path = f"/kafka/v1/topics/{topic}/records"
    cases = [
        (b"{not json", "body"), (b"[1, 2]", "body"), (b"\xff\xfe", "body"),
        (json.dumps({"value": "x", "partition": "0"}).encode(), "partition"),
        (json.dumps({"value": "x", "partition": 5}).encode(), "partition"),
        (json.dumps({"value": "%%%", "value_encoding": "base64"}).encode(), "value"),
        (json.dumps({"value": "x", "value_encoding": "rot13"}).encode(), "value_encoding"),
        (json.dumps({"value": "x", "headers": [{"value": "no key"}]}).encode(), "headers"),
        (json.dumps({"value": "x", "timestamp": -1}).encode(), "timestamp"),
        (json.dumps({"value": "x" * (2 << 20)}).encode(), "value"),
    ]
    for raw, field in cases:
        status, body = http.call("POST", path, raw=raw)
        if field == "value" and len(raw) > 1 << 20:
            assert status == 413, (raw[:40], status)
            assert body["error"] == "body_too_large"
            continue
        assert status == 400, (raw[:40], status, body)
        assert body["field"] == field, (raw[:40], body)
    for raw, field in [(b'{"name": 5}', "name"), (b'{"name": "a b"}', "name"),
                       (b'{"name": "x", "partitions": 0}', "partitions"),
                       (b'{"name": "x", "replication_factor": 3}', "replication_factor"),
                       (b'{"name": "x", "configs": {"nope": "1"}}', "configs")]:
        status, body = http.call("POST", "/kafka/v1/topics", raw=raw)
        assert (status, body["field"]) == (400, field), raw
    for raw, field in [(b'{"to": "yesterday"}', "to"), (b'{"to": "offset"}', "offset"),
                       (b'{"to": "timestamp", "timestamp": "x"}', "timestamp"),
                       (b'{"to": "earliest"}', "topic"),
                       (b'{"to": "earliest", "topic": "' + topic.encode()
                        + b'", "partitions": [7]}', "partitions")]:
        status, body = http.call("POST", f"/kafka/v1/groups/{_name('g')}/offsets/reset",
                                 raw=raw)
        assert (status, body["field"]) == (400, field), raw
    # A body past the listener's bound is refused before it is read.
    with socket.create_connection(("127.0.0.1", site_broker.http_port)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {64 << 20}\r\n"
                     "\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 413 ")
    # The broker is still there and the topic untouched.
    assert http.get(f"/kafka/v1/topics/{topic}")["messages"] == 0


def test_credentials_and_origin_are_checked(site_broker: BrokerProcess) -> None:
    port = site_broker.http_port
    status, body = Http(port, None).call("GET", "/kafka/v1/topics")
    assert (status, body["error"]) == (401, "not_authorised")
    assert Http(port, "guest", "wrong").call("GET", "/kafka/v1/topics")[0] == 401
    assert Http(port, None).call("GET", "/")[0] == 401
    status, body = Http(port).call("POST", "/kafka/v1/topics", {"name": _name("x")},
                                   headers={"Origin": "http://evil.example"})
    assert (status, body["error"]) == (403, "cross_origin")
    status, _ = Http(port).call("DELETE", "/api/queues/%2F/whatever",
                                headers={"Origin": "http://evil.example"})
    assert status == 403
    # /health and /metrics stay open to probes and scrapers.
    assert Http(port, None).call("GET", "/health")[0] == 200


def test_cluster_summary_counts_messages_per_protocol(site_broker: BrokerProcess,
                                                       http: Http) -> None:
    topic = _name("sum")
    http.post("/kafka/v1/topics", {"name": topic, "partitions": 1})
    before = http.get("/kafka/v1")
    http.post(f"/kafka/v1/topics/{topic}/records", {"value": "one"})
    after = http.get("/kafka/v1")
    assert after["messages"]["kafka"]["in"] == before["messages"]["kafka"]["in"] + 1
    assert after["topics"] == before["topics"] and after["kafka_served"] is True
