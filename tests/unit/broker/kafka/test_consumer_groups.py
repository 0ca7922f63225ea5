"""The consumer-protocol group model (KIP-848) without a socket: the assignors, and a
member's convergence on its target assignment (revocation before assignment)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from portask.broker.kafka.groups.assignors import range_, uniform
from portask.broker.kafka.groups.consumer import (
    ConsumerGroups,
    ConsumerHeartbeat,
    HeartbeatResult,
)
from portask.broker.kafka.groups.model import GroupError


def test_uniform_balances_and_keeps_what_members_held() -> None:
    subs = {m: frozenset({"t"}) for m in ("a", "b")}
    first = uniform(subs, {"t": 6}, {})
    assert sorted(len(a["t"]) for a in first.values()) == [3, 3]
    subs3 = {**subs, "c": frozenset({"t"})}
    second = uniform(subs3, {"t": 6}, first)
    assert sorted(len(a["t"]) for a in second.values()) == [2, 2, 2]
    # a and b each keep two of their three: only two partitions move, both to c.
    assert second["a"]["t"] <= first["a"]["t"] and second["b"]["t"] <= first["b"]["t"]
    every = [p for a in second.values() for p in a["t"]]
    assert sorted(every) == list(range(6))


def test_uniform_gives_a_topic_only_to_its_subscribers() -> None:
    subs = {"a": frozenset({"x"}), "b": frozenset({"x", "y"})}
    result = uniform(subs, {"x": 2, "y": 2}, {})
    assert "y" not in result["a"]
    assert result["b"]["y"] == frozenset({0, 1})
    assert sorted(p for a in result.values() for p in a.get("x", ())) == [0, 1]


def test_range_splits_each_topic_in_contiguous_ranges() -> None:
    subs = {m: frozenset({"t", "u"}) for m in ("b", "a")}
    result = range_(subs, {"t": 5, "u": 2}, {})
    assert result["a"] == {"t": frozenset({0, 1, 2}), "u": frozenset({0})}
    assert result["b"] == {"t": frozenset({3, 4}), "u": frozenset({1})}


class _Topic:
    def __init__(self, name: str, partitions: int) -> None:
        self.name = name
        self.partitions = [object()] * partitions


class _Topics:
    """The topics as the coordinator reads them: by name and in iteration."""

    def __init__(self, **counts: int) -> None:
        self._topics = {n: _Topic(n, c) for n, c in counts.items()}

    def get(self, name: str) -> _Topic | None:
        return self._topics.get(name)

    def __iter__(self) -> Iterator[_Topic]:
        return iter(self._topics.values())


def _hb(member: str, epoch: int, owned: dict[str, frozenset[int]] | None = None,
        **fields: object) -> ConsumerHeartbeat:
    values: dict[str, object] = {
        "member_id": member, "member_epoch": epoch, "instance_id": None, "rack_id": None,
        "rebalance_timeout_ms": 30_000 if epoch == 0 else -1,
        "subscribed_topic_names": ("t",) if epoch == 0 else None,
        "subscribed_topic_regex": None, "server_assignor": None,
        "owned": ({} if epoch == 0 else None) if owned is None else owned,
        "client_id": "c", "client_host": "/127.0.0.1", "generate_member_id": False,
    }
    values.update(fields)
    return ConsumerHeartbeat(**values)  # type: ignore[arg-type]


def _run(steps: object) -> None:
    asyncio.run(steps())  # type: ignore[operator]


@pytest.fixture
def groups() -> ConsumerGroups:
    return ConsumerGroups(_Topics(t=4, other=1, tx=2), session_timeout_ms=45_000,  # type: ignore[arg-type]
                          heartbeat_interval_ms=5000, assignors=["uniform", "range"])


def test_a_partition_is_given_only_once_its_owner_has_revoked_it(groups: ConsumerGroups) -> None:
    async def steps() -> None:
        a = groups.heartbeat("g", _hb("a", 0))
        assert (a.member_epoch, a.assignment) == (1, {"t": frozenset(range(4))})
        b = groups.heartbeat("g", _hb("b", 0))
        assert (b.member_epoch, b.assignment) == (2, {})
        # b asks again before a has revoked: still nothing.
        assert groups.heartbeat("g", _hb("b", 2, {})).assignment is None
        revoke = groups.heartbeat("g", _hb("a", 1, {"t": frozenset(range(4))}))
        assert revoke.member_epoch == 1 and revoke.assignment is not None
        kept = revoke.assignment["t"]
        assert len(kept) == 2
        assert groups.get("g").state == "Reconciling"  # type: ignore[union-attr]
        done = groups.heartbeat("g", _hb("a", 1, {"t": kept}))
        assert done.member_epoch == 2
        given = groups.heartbeat("g", _hb("b", 2, {}))
        assert given.assignment == {"t": frozenset(range(4)) - kept}
        assert groups.get("g").state == "Stable"  # type: ignore[union-attr]

    _run(steps)


def test_epochs_out_of_step_are_fenced_and_a_lost_answer_is_forgiven(
    groups: ConsumerGroups,
) -> None:
    async def steps() -> None:
        groups.heartbeat("g", _hb("a", 0))
        assert groups.heartbeat("g", _hb("a", 5)).error is GroupError.FENCED_MEMBER_EPOCH
        groups.heartbeat("g", _hb("b", 0))  # epoch 2; a must revoke to get there
        revoke = groups.heartbeat("g", _hb("a", 1, {"t": frozenset(range(4))}))
        assert revoke.assignment is not None
        moved = groups.heartbeat("g", _hb("a", 1, revoke.assignment))
        assert moved.member_epoch == 2
        # The answer with epoch 2 was lost: epoch 1 with a subset of the assignment is
        # accepted; with more than the assignment it is fenced.
        again: HeartbeatResult = groups.heartbeat("g", _hb("a", 1, revoke.assignment))
        assert again.error is None and again.member_epoch == 2
        stale = groups.heartbeat("g", _hb("a", 1, {"t": frozenset(range(4))}))
        assert stale.error is GroupError.FENCED_MEMBER_EPOCH
        assert groups.heartbeat("g", _hb("x", 1)).error is GroupError.UNKNOWN_MEMBER

    _run(steps)


def test_a_static_member_that_left_is_replaced_by_its_next_incarnation(
    groups: ConsumerGroups,
) -> None:
    async def steps() -> None:
        first = groups.heartbeat("g", _hb("a1", 0, instance_id="i"))
        taken = groups.heartbeat("g", _hb("a2", 0, instance_id="i"))
        assert taken.error is GroupError.UNRELEASED_INSTANCE_ID
        left = groups.heartbeat("g", _hb("a1", -2, instance_id="i"))
        assert (left.error, left.member_epoch) == (None, -2)
        back = groups.heartbeat("g", _hb("a2", 0, instance_id="i"))
        assert (back.member_epoch, back.assignment) == (first.member_epoch, first.assignment)
        group = groups.get("g")
        assert group is not None and list(group.members) == ["a2"]
        assert group.group_epoch == 1

    _run(steps)


def test_regex_subscriptions_match_whole_topic_names(groups: ConsumerGroups) -> None:
    async def steps() -> None:
        joined = groups.heartbeat("g", _hb("a", 0, subscribed_topic_names=None,
                                           subscribed_topic_regex="t.*"))
        assert joined.assignment == {"t": frozenset(range(4)), "tx": frozenset({0, 1})}
        bad = groups.heartbeat("h", _hb("a", 0, subscribed_topic_regex="(["))
        assert bad.error is GroupError.INVALID_REGULAR_EXPRESSION

    _run(steps)

