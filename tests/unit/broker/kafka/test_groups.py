"""The group coordinator's state machine, driven directly on an event loop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portask.broker.definitions import Definitions
from portask.broker.kafka.groups import (
    COMPLETING,
    EMPTY,
    PREPARING,
    STABLE,
    GroupError,
    Groups,
    JoinRequest,
    OffsetEntry,
)
from portask.config import KafkaSettings, Settings

SESSION_MS = 200


class _Partition:
    high_watermark = 10


class _Topics:
    """Every partition of topic "t" exists; nothing else does."""

    def partition(self, name: str, index: int) -> Any:
        return _Partition() if name == "t" and 0 <= index < 3 else None


@pytest.fixture
def definitions(tmp_path: Path) -> Iterator[Definitions]:
    defs = Definitions(tmp_path).open()
    yield defs
    defs.close()


def make_groups(definitions: Definitions, **kafka: Any) -> Groups:
    settings = Settings(
        kafka=dataclasses.replace(KafkaSettings(), group_min_session_timeout_ms=10, **kafka)
    )
    return Groups(settings, definitions, _Topics())  # type: ignore[arg-type]


def join_args(
    member_id: str = "", protocols: list[tuple[str, bytes]] | None = None,
    instance_id: str | None = None, session_ms: int = SESSION_MS, rebalance_ms: int = 300,
) -> JoinRequest:
    return JoinRequest(
        member_id=member_id, instance_id=instance_id, client_id="c", client_host="/h",
        session_timeout_ms=session_ms, rebalance_timeout_ms=rebalance_ms,
        protocol_type="consumer", protocols=protocols or [("range", b"r")],
        require_known_member_id=False, supports_skip_assignment=False,
    )


async def test_members_join_one_generation_and_get_the_leaders_assignment(
    definitions: Definitions,
) -> None:
    groups = make_groups(definitions, group_initial_rebalance_delay_ms=50)
    first = groups.join("g", join_args(protocols=[("range", b"a"), ("roundrobin", b"a")]))
    second = groups.join("g", join_args(protocols=[("roundrobin", b"b"), ("range", b"b")]))
    third = groups.join("g", join_args(protocols=[("roundrobin", b"c")]))
    a, b, c = await asyncio.gather(first, second, third)
    # One generation for all three (the initial delay waited for them); the only
    # protocol all support wins.
    assert {a.generation, b.generation, c.generation} == {1}
    assert a.protocol_name == "roundrobin" and a.leader == a.member_id
    assert [m.metadata for m in a.members] == [b"a", b"b", b"c"] and not b.members
    group = groups.get("g")
    assert group is not None and group.state is COMPLETING
    follower = groups.sync("g", 1, b.member_id, None, None, None, {})
    assert not follower.done()  # waits for the leader
    leader = groups.sync("g", 1, a.member_id, None, "consumer", "roundrobin",
                         {a.member_id: b"A", b.member_id: b"B"})
    assert (await leader).assignment == b"A" and (await follower).assignment == b"B"
    assert (await groups.sync("g", 1, c.member_id, None, None, None, {})).assignment == b""
    assert group.state is STABLE


async def test_a_silent_member_is_evicted_and_the_others_rebalance(
    definitions: Definitions,
) -> None:
    groups = make_groups(definitions)
    a = await groups.join("g", join_args())
    await groups.sync("g", 1, a.member_id, None, None, None, {a.member_id: b""})
    b_join = groups.join("g", join_args())
    assert groups.heartbeat("g", a.member_id, None, 1) is GroupError.REBALANCE_IN_PROGRESS
    a_join = groups.join("g", join_args(a.member_id))
    a2, b = await asyncio.gather(a_join, b_join)
    assert a2.generation == b.generation == 2
    for m in (a2, b):
        groups.sync("g", 2, m.member_id, None, None, None, {a.member_id: b"", b.member_id: b""})
    # Only a keeps heartbeating: b's session expires.
    for _ in range(6):
        await asyncio.sleep(SESSION_MS / 1000 / 2)
        error = groups.heartbeat("g", a.member_id, None, 2)
        if error is GroupError.REBALANCE_IN_PROGRESS:
            break
    assert error is GroupError.REBALANCE_IN_PROGRESS
    group = groups.get("g")
    assert group is not None and list(group.members) == [a.member_id]
    assert groups.heartbeat("g", b.member_id, None, 2) is GroupError.UNKNOWN_MEMBER
    assert (await groups.join("g", join_args(a.member_id))).generation == 3


async def test_a_member_that_never_syncs_is_removed_at_the_rebalance_timeout(
    definitions: Definitions,
) -> None:
    groups = make_groups(definitions)
    a = await groups.join("g", join_args(rebalance_ms=100, session_ms=5000))
    group = groups.get("g")
    assert group is not None and group.state is COMPLETING
    await asyncio.sleep(0.2)
    assert group.state is EMPTY and not group.members and group.generation == 2
    assert groups.heartbeat("g", a.member_id, None, 1) is GroupError.UNKNOWN_MEMBER


async def test_static_member_takes_its_place_back_and_fences_the_old_id(
    definitions: Definitions,
) -> None:
    groups = make_groups(definitions)
    a = await groups.join("g", join_args(instance_id="i"))
    await groups.sync("g", 1, a.member_id, "i", None, None, {a.member_id: b"mine"})
    again = await groups.join("g", join_args(instance_id="i"))
    assert again.error is None and again.generation == 1 and again.member_id != a.member_id
    assert again.leader == a.member_id  # pre-KIP-814 clients must not reassign
    sync = await groups.sync("g", 1, again.member_id, "i", None, None, {})
    assert sync.assignment == b"mine"
    assert groups.heartbeat("g", a.member_id, "i", 1) is GroupError.FENCED_INSTANCE
    # KIP-814 (JoinGroup v9): the rejoining leader is told it leads, but not to reassign.
    newer = await groups.join(
        "g", dataclasses.replace(join_args(instance_id="i"), supports_skip_assignment=True)
    )
    assert newer.leader == newer.member_id and newer.skip_assignment
    assert [m.instance_id for m in newer.members] == ["i"] and newer.generation == 1
    assert (await groups.sync("g", 1, newer.member_id, "i", None, None, {})).assignment == b"mine"
    assert groups.heartbeat("g", again.member_id, "i", 1) is GroupError.FENCED_INSTANCE
    error, answers = groups.leave("g", [("", "i")])
    assert error is None and answers == [None]
    group = groups.get("g")
    assert group is not None and group.state is EMPTY


async def test_kip_394_member_id_required_and_forgotten_when_unused(
    definitions: Definitions,
) -> None:
    groups = make_groups(definitions)
    request = dataclasses.replace(join_args(), require_known_member_id=True)
    first = await groups.join("g", request)
    assert first.error is GroupError.MEMBER_ID_REQUIRED and first.member_id
    group = groups.get("g")
    assert group is not None and first.member_id in group.pending_members
    await asyncio.sleep(SESSION_MS / 1000 + 0.05)
    assert not group.pending_members
    late = await groups.join("g", dataclasses.replace(request, member_id=first.member_id))
    assert late.error is GroupError.UNKNOWN_MEMBER


async def test_bad_joins(definitions: Definitions) -> None:
    groups = make_groups(definitions)
    too_short = await groups.join("g", join_args(session_ms=5))
    assert too_short.error is GroupError.INVALID_SESSION_TIMEOUT
    assert (await groups.join("", join_args())).error is GroupError.INVALID_GROUP_ID
    await groups.join("g", join_args())
    other = await groups.join("g", join_args(protocols=[("sticky", b"")]))
    assert other.error is GroupError.INCONSISTENT_PROTOCOL


async def test_commit_rules_and_durable_offsets(definitions: Definitions, tmp_path: Path) -> None:
    groups = make_groups(definitions)
    entry = OffsetEntry(5, -1, "m", 1)
    # A group that does not exist accepts only "simple" commits (generation -1).
    assert groups.commit_offsets("g", "x", None, 2, {("t", 0): entry}) is (
        GroupError.ILLEGAL_GENERATION
    )
    assert groups.commit_offsets("g", "", None, -1, {("t", 0): entry}) is None
    a = await groups.join("g", join_args())
    group = groups.get("g")
    assert group is not None
    assert groups.commit_offsets("g", a.member_id, None, 1, {("t", 1): entry}) is (
        GroupError.REBALANCE_IN_PROGRESS  # joined but not synced yet
    )
    await groups.sync("g", 1, a.member_id, None, None, None, {})
    assert groups.commit_offsets("g", "", None, -1, {("t", 1): entry}) is (
        GroupError.UNKNOWN_MEMBER  # only members commit for an active group
    )
    assert groups.commit_offsets("g", a.member_id, None, 1, {("t", 1): entry}) is None
    assert list(groups.lag()) == [("g", "t", 0, 5), ("g", "t", 1, 5)]
    assert groups.delete(["g"]) == {"g": GroupError.NON_EMPTY_GROUP}
    definitions.close()
    reopened = Definitions(tmp_path).open()
    try:
        after = make_groups(reopened)
        assert after.committed("g") == {("t", 0): entry, ("t", 1): entry}
        assert after.committed("g", [("t", 2), ("gone", 0)]) == {("t", 2): None, ("gone", 0): None}
        restored = after.get("g")
        assert restored is not None and restored.state is EMPTY  # membership is not durable
        assert after.delete(["g"]) == {"g": None}
        assert after.committed("g") == {} and after.get("g") is None
    finally:
        reopened.close()
        definitions.open()  # the fixture closes it again


async def test_group_is_preparing_while_a_member_is_missing(definitions: Definitions) -> None:
    groups = make_groups(definitions)
    a = await groups.join("g", join_args(session_ms=5000))
    await groups.sync("g", 1, a.member_id, None, None, None, {})
    pending = groups.join("g", join_args(session_ms=5000))
    await asyncio.sleep(0.05)
    group = groups.get("g")
    assert group is not None and group.state is PREPARING and not pending.done()
    await groups.join("g", join_args(a.member_id, session_ms=5000))
    assert (await pending).generation == 2


async def test_a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout(
    definitions: Definitions,
) -> None:
    groups = make_groups(definitions)
    a = await groups.join("g", join_args(session_ms=5000, rebalance_ms=200))
    await groups.sync("g", 1, a.member_id, None, None, None, {})
    b_join = groups.join("g", join_args(session_ms=5000, rebalance_ms=200))
    a_join = groups.join("g", join_args(a.member_id, session_ms=5000, rebalance_ms=200))
    a2, b = await asyncio.gather(a_join, b_join)
    for m in (a2, b):
        groups.sync("g", 2, m.member_id, None, None, None, {})
    await asyncio.sleep(0.01)
    leader_rejoin = groups.join("g", join_args(a.member_id, session_ms=5000, rebalance_ms=200))
    # b still heartbeats (and hears of the rebalance) but never sends its JoinGroup.
    assert groups.heartbeat("g", b.member_id, None, 2) is GroupError.REBALANCE_IN_PROGRESS
    result = await asyncio.wait_for(leader_rejoin, 1)
    assert result.generation == 3 and [m.member_id for m in result.members] == [a.member_id]
    assert groups.heartbeat("g", b.member_id, None, 2) is GroupError.UNKNOWN_MEMBER
