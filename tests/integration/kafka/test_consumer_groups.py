"""Consumer groups with real clients: splitting partitions, rebalances, eviction, static
membership, cooperative-sticky, admin operations; and the coordinator's answers to bad
input, on the wire."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from kafka.admin import KafkaAdminClient

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.clients import bootstrap, create_topic, produce_confluent
from tests.integration.kafka.group_clients import (
    CLIENTS,
    HEARTBEAT_INTERVAL_MS,
    SESSION_TIMEOUT_MS,
    GroupMember,
    split_evenly,
    wait_for,
)
from tests.integration.kafka.wire_client import request_types
from tests.integration.kafka.wire_group import (
    FIND_COORDINATOR,
    JOIN_GROUP,
    JOIN_V,
    WireMember,
    join_request,
    rebalance,
)

UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS = 25, 22, 27
INCONSISTENT_GROUP_PROTOCOL, INVALID_SESSION_TIMEOUT, INVALID_GROUP_ID = 23, 26, 24


def batch(prefix: str, n: int, partitions: int = 3) -> list[tuple[int, bytes, bytes, list]]:
    return [(i % partitions, b"k", f"{prefix}-{i}".encode(), []) for i in range(n)]


def scrape(broker: BrokerProcess, name: str, **labels: str) -> float | None:
    """One sample from /metrics, or None when the series does not exist."""
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics") as response:
        text = response.read().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == wanted:
            return float(m.group(2))
    return None


@pytest.mark.parametrize("client", CLIENTS)
def test_two_consumers_split_partitions_and_a_third_triggers_a_rebalance(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str], client: str
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    group = f"split-{topic}"
    create_topic(port, topic, 3)
    a = GroupMember(client, port, group, topic).start()
    members: tuple[GroupMember, ...] = (a,)
    try:
        # The first member settles alone before the second joins: kafka-python 3.0's leader
        # can miss its own SyncGroup answer when it rejoins for new metadata at the moment
        # a second member joins (the broker's answer is on the wire; the client drops it).
        wait_for(lambda: a.partitions == {0, 1, 2}, what="the first member", members=members)
        b = GroupMember(client, port, group, topic).start()
        members = (a, b)
        wait_for(lambda: split_evenly((a, b), 3), what="two members to split", members=members)
        first = batch("first", 30)
        produce_confluent(port, topic, first)
        wait_for(lambda: len(a.values()) + len(b.values()) >= 30, members=members)
        # Each member read only its own partitions, and every record exactly once.
        assert {p for p, _, _ in a.records} <= a.partitions
        assert {p for p, _, _ in b.records} <= b.partitions
        assert sorted(a.values() + b.values()) == sorted(v for _, _, v, _ in first)
        rebalances = scrape(kafka_broker, "portask_kafka_group_rebalances_total", group=group)

        c = GroupMember(client, port, group, topic).start()
        members = (a, b, c)
        wait_for(lambda: split_evenly(members, 3), what="three members to split", members=members)
        assert scrape(kafka_broker, "portask_kafka_group_rebalances_total", group=group) > (
            rebalances or 0
        )
        assert scrape(kafka_broker, "portask_kafka_group_members", group=group) == 3
        second = batch("second", 30)
        produce_confluent(port, topic, second)
        wait_for(lambda: sum(len(m.values()) for m in members) >= 60, members=members)
        time.sleep(0.3)  # nothing more may arrive: no record is delivered twice
        every = a.values() + b.values() + c.values()
        assert sorted(every) == sorted(v for _, _, v, _ in first + second)
    finally:
        for m in members:
            m.stop()


_KILLED_MEMBER = textwrap.dedent(
    """
    import sys
    from confluent_kafka import Consumer
    port, group, topic, session, heartbeat = sys.argv[1:6]
    consumer = Consumer({
        "bootstrap.servers": f"127.0.0.1:{port}", "group.id": group,
        "session.timeout.ms": int(session), "heartbeat.interval.ms": int(heartbeat),
    })
    consumer.subscribe([topic])
    while True:
        consumer.poll(0.1)
    """
)


def test_a_killed_consumer_is_evicted_after_its_session_timeout(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    group = f"evict-{topic}"
    create_topic(port, topic, 3)
    doomed = subprocess.Popen(
        [sys.executable, "-c", _KILLED_MEMBER, str(port), group, topic,
         str(SESSION_TIMEOUT_MS), str(HEARTBEAT_INTERVAL_MS)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    survivor = GroupMember("confluent", port, group, topic).start()
    try:
        # The survivor holding some but not all partitions means the other member is in.
        wait_for(lambda: 0 < len(survivor.partitions) < 3, what="both members in the group",
                 members=(survivor,))
        doomed.send_signal(signal.SIGKILL)  # no LeaveGroup: only the session timeout tells
        doomed.wait(5)
        took = wait_for(lambda: survivor.partitions == {0, 1, 2}, timeout=20,
                        what="the survivor to get every partition", members=(survivor,))
        # Evicted after its session timeout (measured from its last heartbeat), not before.
        assert SESSION_TIMEOUT_MS / 1000 - 1 < took < SESSION_TIMEOUT_MS / 1000 + 5
        produce_confluent(port, topic, batch("after", 9))
        wait_for(lambda: len(survivor.values()) >= 9, members=(survivor,))
    finally:
        if doomed.poll() is None:
            doomed.kill()
        survivor.stop()


def test_cooperative_sticky_assignment_with_confluent(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    group = f"coop-{topic}"
    create_topic(port, topic, 3)
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    a = GroupMember("confluent", port, group, topic, **conf).start()
    b = GroupMember("confluent", port, group, topic, **conf).start()
    members: tuple[GroupMember, ...] = (a, b)
    try:
        wait_for(lambda: split_evenly((a, b), 3), what="two members to split", members=members)
        produce_confluent(port, topic, batch("first", 30))
        wait_for(lambda: len(a.values()) + len(b.values()) >= 30, members=members)
        before = {id(m): m.partitions for m in members}
        c = GroupMember("confluent", port, group, topic, **conf).start()
        members = (a, b, c)
        wait_for(lambda: split_evenly(members, 3), what="three members to split", members=members)
        # Sticky: the old members kept a part of what they had.
        assert a.partitions <= before[id(a)] and b.partitions <= before[id(b)]
        produce_confluent(port, topic, batch("second", 30))
        wait_for(lambda: sum(len(m.values()) for m in members) >= 60, members=members)
        assert len(set(a.values() + b.values() + c.values())) == 60
        admin = AdminClient({"bootstrap.servers": bootstrap(port)})
        described = admin.describe_consumer_groups([group])[group].result(10)
        assert described.partition_assignor == "cooperative-sticky"
        assert len(described.members) == 3
    finally:
        for m in members:
            m.stop()


def test_static_member_rejoins_without_a_rebalance(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    group = f"static-{topic}"
    create_topic(port, topic, 3)
    a = GroupMember("confluent", port, group, topic, **{"group.instance.id": "a"}).start()
    b = GroupMember("confluent", port, group, topic, **{"group.instance.id": "b"}).start()
    again = None
    try:
        wait_for(lambda: split_evenly((a, b), 3), what="two members to split", members=(a, b))
        held = a.partitions
        rebalances = scrape(kafka_broker, "portask_kafka_group_rebalances_total", group=group)
        a.stop()  # a static member sends no LeaveGroup when it closes
        again = GroupMember("confluent", port, group, topic, **{"group.instance.id": "a"})
        again.start()
        wait_for(lambda: again.partitions == held, what="the same partitions back",
                 members=(again, b))
        assert b.partitions == frozenset({0, 1, 2}) - held
        assert scrape(kafka_broker, "portask_kafka_group_rebalances_total", group=group) == (
            rebalances
        )
    finally:
        for m in (a, b, again):
            if m is not None and m._thread.is_alive():
                m.stop()


def test_describe_list_and_delete_groups_with_admin_clients(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    group = f"admin-{topic}"
    create_topic(port, topic, 3)
    produce_confluent(port, topic, batch("x", 9))
    member = GroupMember("confluent", port, group, topic).start()
    confluent = AdminClient({"bootstrap.servers": bootstrap(port)})
    kp = KafkaAdminClient(bootstrap_servers=bootstrap(port))
    try:
        wait_for(lambda: len(member.values()) >= 9 and len(member.partitions) == 3,
                 members=(member,))
        listed = confluent.list_consumer_groups().result(10)
        found = {g.group_id: g for g in listed.valid}
        assert found[group].state.name == "STABLE" and not found[group].is_simple_consumer_group
        described = confluent.describe_consumer_groups([group])[group].result(10)
        assert described.state.name == "STABLE" and described.partition_assignor == "range"
        (only,) = described.members
        assert {tp.partition for tp in only.assignment.topic_partitions} == {0, 1, 2}
        assert only.host == "/127.0.0.1"

        listed_kp = {g["group_id"]: g for g in kp.list_groups()}
        assert listed_kp[group]["protocol_type"] == "consumer"
        assert listed_kp[group]["group_state"] == "Stable"
        info = kp.describe_groups([group])[group]
        assert info["error"] is None and info["group_state"] == "Stable"
        assert info["protocol_data"] == "range" and len(info["members"]) == 1

        # An active group cannot be deleted.
        with pytest.raises(KafkaException) as refused:
            confluent.delete_consumer_groups([group])[group].result(10)
        assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP

        wait_for(lambda: scrape(kafka_broker, "portask_kafka_consumer_group_lag", group=group,
                                topic=topic, partition="0") == 0, what="lag 0")
        member.stop()
        produce_confluent(port, topic, batch("unread", 3))
        # Committed offsets outlive the members; lag counts what nobody read yet.
        offsets = kp.list_group_offsets(group)[group]
        assert {tp.partition: o.offset for tp, o in offsets.items()} == {0: 3, 1: 3, 2: 3}
        assert scrape(kafka_broker, "portask_kafka_consumer_group_lag", group=group,
                      topic=topic, partition="1") == 1
        info = kp.describe_groups([group])[group]
        assert info["group_state"] == "Empty" and not info["members"]
        assert [g["group_id"] for g in kp.list_groups(states_filter=["Empty"])].count(group) == 1
        assert group not in {g["group_id"] for g in kp.list_groups(states_filter=["Stable"])}

        assert kp.delete_groups([group]) == {group: "OK"}
        assert group not in {g["group_id"] for g in kp.list_groups()}
        assert scrape(kafka_broker, "portask_kafka_consumer_group_lag", group=group,
                      topic=topic, partition="1") is None
        with pytest.raises(KafkaException) as missing:
            confluent.delete_consumer_groups([group])[group].result(10)
        assert missing.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
    finally:
        if member._thread.is_alive():
            member.stop()
        kp.close()


# -- on the wire ----------------------------------------------------------------------


def test_rebalance_of_three_members_completes_within_a_second(
    kafka_broker: BrokerProcess,
) -> None:
    port = kafka_broker.kafka_port
    group = "wire-three"
    members = [WireMember(port, group) for _ in range(3)]
    try:
        # Ids are fetched just before joining: an id handed out but not yet used holds
        # up rebalances until its member joins (or its session timeout forgets it).
        for count in (1, 2, 3):
            members[count - 1].obtain_member_id()
            rebalance(members[:count])
        # The leader rejoining starts a rebalance; the others hear of it by heartbeat.
        members[0].send_join()
        assert members[1].heartbeat() == REBALANCE_IN_PROGRESS
        took = rebalance_after_leader(members)
        assert took < 1.0, f"rebalance took {took:.3f}s"
        assert {m.generation for m in members} == {members[0].generation}
        assert all(m.assignment == m.member_id.encode() for m in members)
    finally:
        for m in members:
            m.close()


def test_initial_rebalance_delay_gathers_a_starting_group(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "data", "--set", "kafka.group_initial_rebalance_delay_ms=300")
    members = [WireMember(broker.kafka_port, "slow-start") for _ in range(3)]
    try:
        for m in members:
            m.obtain_member_id()
        took = rebalance(members)
        # One generation for all three: the delay (extended once, since members kept
        # arriving during it) let the whole group in before the first assignment.
        assert {m.generation for m in members} == {1}
        assert sorted(next(m for m in members if m.members).members) == sorted(
            m.member_id for m in members
        )
        assert 0.25 < took < 2
    finally:
        for m in members:
            m.close()
        broker.stop()


def rebalance_after_leader(members: list[WireMember]) -> float:
    """Finish a rebalance whose leader already sent its JoinGroup."""
    members[1].send_join()
    started = time.perf_counter()
    members[2].send_join()
    for m in members:
        m.receive_join()
    leader = next(m for m in members if m.member_id == m.leader)
    for m in members:
        if m is not leader:
            m.send_sync()
    leader.send_sync({mid: mid.encode() for mid in leader.members})
    for m in members:
        m.receive_sync()
    return time.perf_counter() - started


def test_coordinator_refuses_bad_group_requests(kafka_broker: BrokerProcess) -> None:
    port = kafka_broker.kafka_port
    group = "wire-bad"
    first = WireMember(port, group)
    other = WireMember(port, group)
    try:
        # Session timeout below group.min.session.timeout.ms (6 s).
        bad = first.call(join_request(group, session_ms=1000), JOIN_GROUP)
        assert bad.error_code == INVALID_SESSION_TIMEOUT
        assert first.call(join_request(""), JOIN_GROUP).error_code == INVALID_GROUP_ID
        # An id the group never handed out.
        stranger = first.call(join_request(group, "nobody"), JOIN_GROUP)
        assert stranger.error_code == UNKNOWN_MEMBER_ID
        first.obtain_member_id()
        rebalance([first])
        assert first.leader == first.member_id and first.generation == 1
        # Another protocol type, or no protocol in common, cannot join.
        for kwargs in ({"protocol_type": "connect"}, {"protocols": (("sticky", b""),)}):
            answer = other.call(join_request(group, **kwargs), JOIN_GROUP)
            assert answer.error_code == INCONSISTENT_GROUP_PROTOCOL, kwargs
        assert first.heartbeat() == 0
        assert first.heartbeat(generation=0) == ILLEGAL_GENERATION
        assert first.heartbeat(member_id="nobody") == UNKNOWN_MEMBER_ID
        # FindCoordinator v4 batches keys; v0 asks for one group.
        m = request_types(FIND_COORDINATOR, 4)
        found = first.call(
            m.FindCoordinatorRequest(key_type=0, coordinator_keys=("a", "b")), FIND_COORDINATOR
        )
        assert [(c.key, c.node_id, c.port, c.error_code) for c in found.coordinators] == [
            ("a", 0, port, 0), ("b", 0, port, 0)
        ]
        v0 = first.call(request_types(FIND_COORDINATOR, 0).FindCoordinatorRequest(key="a"),
                        FIND_COORDINATOR)
        assert (v0.error_code, v0.node_id, v0.port) == (0, 0, port)
        # The join of a rejoining member with its id still works after all that.
        again = first.call(join_request(group, first.member_id), JOIN_GROUP)
        assert again.error_code == 0 and again.generation_id == 2
    finally:
        first.close()
        other.close()


def test_join_group_v0_without_member_id_round_trip(kafka_broker: BrokerProcess) -> None:
    """Before v4 a new member is added at once, without MEMBER_ID_REQUIRED."""
    member = WireMember(kafka_broker.kafka_port, "wire-v0")
    try:
        m = request_types(JOIN_GROUP, 0)
        response = member.call(
            m.JoinGroupRequest(
                group_id="wire-v0", session_timeout=join_request("x").session_timeout,
                member_id="", protocol_type="consumer",
                protocols=(m.JoinGroupRequestProtocol(name="range", metadata=b"m"),),
            ),
            JOIN_GROUP,
        )
        assert response.error_code == 0 and response.generation_id == 1
        assert response.leader == response.member_id and response.protocol_name == "range"
        assert [(x.member_id, x.metadata) for x in response.members] == [
            (response.member_id, b"m")
        ]
    finally:
        member.close()
    assert JOIN_V == 9
