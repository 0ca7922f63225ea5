"""Consumer groups: state, members and their assignments, committed offsets and lag per
partition; delete an empty group; reset an empty group's offsets."""

from __future__ import annotations

from typing import Any

from portask.http.kafka.api import Call, body_int, body_str, invalid
from portask.http.kafka.view import Group, KafkaView
from portask.http.management.api import Router

RESET_TO = ("earliest", "latest", "timestamp", "offset")


def member_items(view: KafkaView, group: Group) -> list[dict[str, Any]]:
    out = []
    for member in list(group.members.values()):
        out.append({
            "member_id": member.member_id, "group_instance_id": member.instance_id,
            "client_id": member.client_id, "client_host": member.client_host,
            "session_timeout_ms": member.session_timeout_ms,
            "subscription": view.subscription(group, member.metadata(group.protocol_name)),
            "assignment": [{"topic": t, "partitions": p}
                           for t, p in view.assignment(group, member.assignment)],
        })
    return out


def offset_items(view: KafkaView, group: Group,
                 members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    owner = {(a["topic"], p): m["member_id"] for m in members for a in m["assignment"]
             for p in a["partitions"]}
    committed = view.committed(group.group_id)
    out = []
    for topic_name, index in sorted(set(committed) | set(owner)):
        partition = view.existing_partition(topic_name, index)
        if partition is None:
            continue
        offset = committed.get((topic_name, index))
        end = partition.high_watermark
        out.append({"topic": topic_name, "partition": index, "committed": offset,
                    "log_start_offset": partition.log_start_offset, "high_watermark": end,
                    "lag": None if offset is None else max(end - offset, 0),
                    "member_id": owner.get((topic_name, index))})
    return out


def summary(view: KafkaView, group: Group) -> dict[str, Any]:
    offsets = offset_items(view, group, [])
    lags = [o["lag"] for o in offsets if o["lag"] is not None]
    return {"group_id": group.group_id, "state": group.state.value,
            "protocol_type": group.protocol_type or "", "protocol": group.protocol_name or "",
            "members": len(group.members), "topics": sorted({o["topic"] for o in offsets}),
            "lag": sum(lags) if lags else None}


def register(router: Router, view: KafkaView) -> None:
    def listing(call: Call) -> Any:
        return [summary(view, g) for g in view.groups()]

    def show(call: Call) -> Any:
        group = view.group(call.params["group"])
        members = member_items(view, group)
        offsets = offset_items(view, group, members)
        lags = [o["lag"] for o in offsets if o["lag"] is not None]
        return {"group_id": group.group_id, "state": group.state.value,
                "protocol_type": group.protocol_type or "",
                "protocol": group.protocol_name or "", "generation": group.generation,
                "leader": group.leader_id, "members": members, "offsets": offsets,
                "lag": sum(lags) if lags else None}

    def delete(call: Call) -> Any:
        view.delete_group(call.params["group"])

    def reset(call: Call) -> Any:
        group_id = call.params["group"]
        body = call.body()
        to = body_str(body, "to", required=True)
        if to not in RESET_TO:
            raise invalid("to", f"to must be one of {', '.join(RESET_TO)}, got {to!r}")
        timestamp = body_int(body, "timestamp", minimum=0, maximum=2**63 - 1)
        offset = body_int(body, "offset", minimum=0, maximum=2**63 - 1)
        if to == "timestamp" and timestamp is None:
            raise invalid("timestamp", "timestamp (ms since the epoch) is required with "
                          "to=timestamp")
        if to == "offset" and offset is None:
            raise invalid("offset", "offset is required with to=offset")
        targets = _targets(view, group_id, body)
        offsets: dict[tuple[str, int], int] = {}
        for topic_name, index in targets:
            partition = view.partition(view.topic(topic_name), index)
            start, end = partition.log_start_offset, partition.high_watermark
            if to == "earliest":
                offsets[(topic_name, index)] = start
            elif to == "latest":
                offsets[(topic_name, index)] = end
            elif to == "timestamp":
                assert timestamp is not None
                offsets[(topic_name, index)] = view.offset_for_timestamp(partition, timestamp)
            else:
                assert offset is not None
                # As kafka-consumer-groups: an offset outside the log is moved into it.
                offsets[(topic_name, index)] = min(max(offset, start), end)
        view.reset_offsets(group_id, offsets)
        return {"group_id": group_id,
                "offsets": [{"topic": t, "partition": p, "offset": o}
                            for (t, p), o in sorted(offsets.items())]}

    router.add("GET", "groups", listing)
    router.add("GET", "groups/{group}", show)
    router.add("DELETE", "groups/{group}", delete)
    router.add("POST", "groups/{group}/offsets/reset", reset)


def _targets(view: KafkaView, group_id: str, body: dict[str, Any]) -> list[tuple[str, int]]:
    """The partitions a reset moves: a topic's (all, or those listed), else every
    partition the group has committed offsets for."""
    topic_name = body_str(body, "topic")
    if topic_name is None:
        if body.get("partitions") is not None:
            raise invalid("topic", "partitions are given per topic: name the topic")
        targets = sorted(view.committed(group_id))
        if not targets:
            raise invalid("topic", f"group {group_id!r} has no committed offsets: name the "
                          "topic whose offsets to set")
        return targets
    topic = view.topic(topic_name)
    listed = body.get("partitions")
    if listed is None:
        return [(topic.name, i) for i in range(len(topic.partitions))]
    if not isinstance(listed, list) or not listed or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in listed):
        raise invalid("partitions", "partitions must be a non-empty list of integers")
    for index in listed:
        if not 0 <= index < len(topic.partitions):
            raise invalid("partitions", f"topic {topic.name!r} has no partition {index}")
    return [(topic.name, i) for i in sorted(set(listed))]

