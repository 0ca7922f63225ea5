"""Topics: list, describe (partitions, watermarks, sizes, configs), create, delete, and
configs altered incrementally; and the cluster summary the console's overview reads."""

from __future__ import annotations

from typing import Any

from portask.http.kafka.api import Call, body_int, body_str, invalid
from portask.http.kafka.view import KafkaView, Partition, Topic
from portask.http.management.api import Router, to_json
from portask.http.server import Response


def partition_item(view: KafkaView, partition: Partition) -> dict[str, Any]:
    start, end = partition.log_start_offset, partition.high_watermark
    return {"partition": partition.index, "leader": 0, "replicas": [0], "isr": [0],
            "log_start_offset": start, "high_watermark": end, "messages": end - start,
            "size_bytes": view.size_bytes(partition), "segments": view.segments(partition)}


def topic_summary(view: KafkaView, topic: Topic) -> dict[str, Any]:
    parts = list(topic.partitions)
    return {"name": topic.name, "id": str(topic.topic_id), "partitions": len(parts),
            "replication_factor": 1,
            "messages": sum(p.high_watermark - p.log_start_offset for p in parts),
            "end_offsets": sum(p.high_watermark for p in parts),
            "size_bytes": sum(view.size_bytes(p) for p in parts),
            "configs": dict(topic.configs)}


def config_items(view: KafkaView, topic: Topic) -> dict[str, dict[str, Any]]:
    defaults = view.config_defaults()
    effective = {**defaults, **topic.configs}
    return {name: {"value": value, "source": "topic" if name in topic.configs else "default"}
            for name, value in sorted(effective.items())}


def _configs(body: dict[str, Any], *, nulls: bool) -> dict[str, Any]:
    configs = body.get("configs", {})
    if not isinstance(configs, dict):
        raise invalid("configs", "configs must be an object of name: value")
    out: dict[str, Any] = {}
    for name, value in configs.items():
        if value is None and nulls:
            out[name] = None
        elif isinstance(value, bool) or not isinstance(value, str | int):
            raise invalid("configs", f"config {name!r} must be a string or a number")
        else:
            out[name] = str(value)
    return out


def register(router: Router, view: KafkaView) -> None:
    def cluster(call: Call) -> Any:
        topics = view.topics()
        return {"cluster_id": view.cluster_id(), "controller": 0,
                "brokers": [{"node_id": 0}], "kafka_served": view.kafka_served(),
                "topics": len(topics),
                "partitions": sum(len(t.partitions) for t in topics),
                "groups": len(view.groups()),
                "messages": view.message_totals(),
                "connections": view.connection_counts()}

    def listing(call: Call) -> Any:
        return [topic_summary(view, t) for t in view.topics()]

    def detail(topic: Topic) -> dict[str, Any]:
        return {**topic_summary(view, topic),
                "partitions": [partition_item(view, p) for p in list(topic.partitions)],
                "configs": config_items(view, topic)}

    def show(call: Call) -> Any:
        return detail(view.topic(call.params["name"]))

    def create(call: Call) -> Any:
        body = call.body()
        name = body_str(body, "name", required=True)
        partitions = body_int(body, "partitions", 1, minimum=1, maximum=10_000)
        factor = body_int(body, "replication_factor", 1)
        if factor not in (1, -1):
            raise invalid("replication_factor", "a single node holds one replica: "
                          f"replication_factor must be 1, got {factor}")
        assert name is not None and partitions is not None
        topic = view.create_topic(name, partitions, _configs(body, nulls=False))
        return Response(201, to_json(detail(topic)))

    def delete(call: Call) -> Any:
        view.delete_topic(call.params["name"])

    def configs(call: Call) -> Any:
        return config_items(view, view.topic(call.params["name"]))

    def alter(call: Call) -> Any:
        topic = view.topic(call.params["name"])
        view.alter_configs(topic, _configs(call.body(), nulls=True))
        return config_items(view, topic)

    def partitions(call: Call) -> Any:
        topic = view.topic(call.params["name"])
        return [partition_item(view, p) for p in list(topic.partitions)]

    router.add("GET", "", cluster)
    router.add("GET", "topics", listing)
    router.add("POST", "topics", create)
    router.add("GET", "topics/{name}", show)
    router.add("DELETE", "topics/{name}", delete)
    router.add("GET", "topics/{name}/partitions", partitions)
    router.add("GET", "topics/{name}/configs", configs)
    router.add("PATCH", "topics/{name}/configs", alter)
