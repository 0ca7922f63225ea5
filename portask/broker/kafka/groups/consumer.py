# Over 500 lines: heartbeat, reconciliation and their deadlines are one unit (as the
# consumer-group part of Kafka's GroupMetadataManager).
"""Consumer-protocol groups (KIP-848, Kafka 4's consumer group protocol), beside the
classic ones of ``coordinator.py``.

Members heartbeat; the coordinator owns the assignment. Every change of membership,
subscription or subscribed topics' partition counts bumps the group epoch and computes
a new target assignment at once with the group's server-side assignor
(``assignors.py``). Each member then converges on its target one heartbeat at a time,
as Kafka's CurrentAssignmentBuilder does:

- partitions it holds and must give up are revoked first: it keeps its epoch and is
  told its assignment without them (state ``unrevoked_partitions``) until a heartbeat's
  owned partitions no longer include them;
- then it moves to the assignment epoch and receives the partitions of its target that
  no other member still owns; the others follow on later heartbeats, once released
  (state ``unreleased_partitions``).

A member leaves with epoch -1; a static member (``instance_id``) with -2 keeps its
place and assignment until its session expires, and a new incarnation with the same
instance id takes them over. Membership is not durable, as in Kafka; committed offsets
are (``offsets.CommittedOffsets``, shared with classic groups).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from portask.broker.kafka.groups.assignors import ASSIGNORS, Assignment
from portask.broker.kafka.groups.model import GroupError, TopicPartition
from portask.broker.kafka.topics import Topics

log = logging.getLogger("portask.groups")

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2

STABLE = "stable"
UNREVOKED = "unrevoked_partitions"
UNRELEASED = "unreleased_partitions"


@dataclass(frozen=True, slots=True)
class ConsumerHeartbeat:
    """A ConsumerGroupHeartbeat, protocol-free: None means "unchanged since the last"."""

    member_id: str
    member_epoch: int
    instance_id: str | None
    rack_id: str | None
    rebalance_timeout_ms: int  # -1: unchanged
    subscribed_topic_names: tuple[str, ...] | None
    subscribed_topic_regex: str | None
    server_assignor: str | None
    owned: Assignment | None  # by topic name
    client_id: str
    client_host: str
    generate_member_id: bool  # v0: the coordinator names a member that comes without an id


@dataclass(slots=True)
class HeartbeatResult:
    error: GroupError | None
    message: str | None = None
    member_id: str = ""
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Assignment | None = None  # None: unchanged, not sent


class ConsumerMember:
    __slots__ = (
        "assigned", "assignor", "client_host", "client_id", "expiry", "instance_id",
        "member_epoch", "member_id", "pending_revocation", "previous_epoch", "rack_id",
        "rebalance_timeout_ms", "regex", "revocation_deadline", "state", "topic_names",
    )

    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        self.instance_id: str | None = None
        self.rack_id: str | None = None
        self.client_id = ""
        self.client_host = ""
        self.member_epoch = 0
        self.previous_epoch = -1
        self.state = STABLE
        self.topic_names: tuple[str, ...] = ()
        self.regex: str | None = None
        self.assignor: str | None = None
        self.rebalance_timeout_ms = 300_000
        self.assigned: Assignment = {}
        self.pending_revocation: Assignment = {}
        self.expiry: asyncio.TimerHandle | None = None
        self.revocation_deadline: asyncio.TimerHandle | None = None

    def partitions(self) -> Iterator[TopicPartition]:
        for topic, ps in self.assigned.items():
            for p in ps:
                yield topic, p


class ConsumerGroup:
    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.group_epoch = 0
        self.assignment_epoch = 0
        self.assignor_name = ""
        self.members: dict[str, ConsumerMember] = {}
        self.static_members: dict[str, str] = {}  # instance id -> member id
        self.target: dict[str, Assignment] = {}
        self.subscribed_partitions: dict[str, int] = {}  # topic -> partition count
        # Who holds each partition, assigned or still being revoked: a partition is
        # given to a member only once nobody else holds it.
        self.owners: dict[TopicPartition, str] = {}

    @property
    def state(self) -> str:
        """Kafka's ConsumerGroupState names."""
        if not self.members:
            return "Empty"
        if self.group_epoch != self.assignment_epoch:
            return "Assigning"
        if any(m.member_epoch != self.assignment_epoch or m.state != STABLE
               for m in self.members.values() if m.member_epoch >= 0):
            return "Reconciling"
        return "Stable"


def _subset(owned: Assignment, assigned: Assignment) -> bool:
    return all(ps <= assigned.get(t, frozenset()) for t, ps in owned.items())


def _without(a: Assignment, b: Assignment) -> Assignment:
    out = {t: ps - b.get(t, frozenset()) for t, ps in a.items()}
    return {t: ps for t, ps in out.items() if ps}


def _intersect(a: Assignment, b: Assignment) -> Assignment:
    out = {t: ps & b.get(t, frozenset()) for t, ps in a.items()}
    return {t: ps for t, ps in out.items() if ps}


class ConsumerGroups:
    """The consumer-protocol groups of this broker (the classic ones are ``Groups``)."""

    def __init__(
        self, topics: Topics, *, session_timeout_ms: int, heartbeat_interval_ms: int,
        assignors: list[str],
    ) -> None:
        self.topics = topics
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.assignors = assignors  # the first is the default
        self._groups: dict[str, ConsumerGroup] = {}

    def get(self, group_id: str) -> ConsumerGroup | None:
        return self._groups.get(group_id)

    def __iter__(self) -> Iterator[ConsumerGroup]:
        return iter(list(self._groups.values()))

    def has_members(self, group_id: str) -> bool:
        group = self._groups.get(group_id)
        return group is not None and bool(group.members)

    def forget(self, group_id: str) -> None:
        self._groups.pop(group_id, None)

    # -- ConsumerGroupHeartbeat -----------------------------------------------------

    def heartbeat(self, group_id: str, hb: ConsumerHeartbeat) -> HeartbeatResult:
        error = self._validate(group_id, hb)
        if error is not None:
            return error
        if hb.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            return self._leave(group_id, hb)
        group = self._groups.get(group_id)
        if group is None:
            if hb.member_epoch != JOIN_EPOCH:
                return self._refuse(group_id, hb, GroupError.UNKNOWN_MEMBER,
                                    f"Group {group_id} not found.")
            group = self._groups[group_id] = ConsumerGroup(group_id)
        member, refusal = self._member(group, hb)
        if refusal is not None:
            return refusal
        assert member is not None
        if hb.server_assignor is not None and hb.server_assignor not in ASSIGNORS:
            return self._refuse(group_id, hb, GroupError.UNSUPPORTED_ASSIGNOR,
                                f"Assignor {hb.server_assignor} is not supported. "
                                f"Supported assignors: {', '.join(self.assignors)}.")
        before = dict(member.assigned)
        changed = self._update_subscription(member, hb)
        self._expect_heartbeat(group, member)
        if changed or self._partitions_changed(group):
            self._bump(group, f"member {member.member_id} joined or changed its subscription")
        self._reconcile(group, member, hb.owned)
        full = hb.member_epoch == JOIN_EPOCH or (
            hb.owned is not None and hb.owned != member.assigned)
        return HeartbeatResult(
            None, None, member.member_id, member.member_epoch, self.heartbeat_interval_ms,
            member.assigned if full or member.assigned != before else None,
        )

    def _validate(self, group_id: str, hb: ConsumerHeartbeat) -> HeartbeatResult | None:
        why = None
        if not group_id:
            why = "GroupId can't be empty."
        elif not hb.member_id and not hb.generate_member_id:
            why = "MemberId can't be empty."
        elif hb.member_epoch < STATIC_LEAVE_EPOCH:
            why = f"MemberEpoch is {hb.member_epoch}, but must be greater than or equal to -2."
        elif hb.member_epoch == JOIN_EPOCH:
            if hb.rebalance_timeout_ms == -1:
                why = "RebalanceTimeoutMs must be provided in first request."
            elif hb.owned is None:
                why = "TopicPartitions must be empty when (re-)joining."
            elif hb.subscribed_topic_names is None and hb.subscribed_topic_regex is None:
                why = "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
        elif hb.member_epoch == STATIC_LEAVE_EPOCH and hb.instance_id is None:
            why = "InstanceId can't be null."
        if why is None and hb.subscribed_topic_regex:
            try:
                re.compile(hb.subscribed_topic_regex)
            except re.error as exc:
                return self._refuse(group_id, hb, GroupError.INVALID_REGULAR_EXPRESSION,
                                    f"SubscribedTopicRegex is not a valid regular "
                                    f"expression: {exc}.")
        if why is None:
            return None
        return self._refuse(group_id, hb, GroupError.INVALID_REQUEST, why)

    def _refuse(self, group_id: str, hb: ConsumerHeartbeat, error: GroupError,
                message: str) -> HeartbeatResult:
        log.info(f"consumer heartbeat refused: {error.name}", extra={"fields": {
            "group": group_id, "member_id": hb.member_id, "member_epoch": hb.member_epoch,
            "reason": message}})
        return HeartbeatResult(error, message, hb.member_id, hb.member_epoch)

    def _member(
        self, group: ConsumerGroup, hb: ConsumerHeartbeat
    ) -> tuple[ConsumerMember | None, HeartbeatResult | None]:
        gid = group.group_id
        if hb.member_epoch == JOIN_EPOCH:
            if hb.instance_id is not None:
                previous_id = group.static_members.get(hb.instance_id)
                if previous_id is not None and previous_id != hb.member_id:
                    previous = group.members[previous_id]
                    if previous.member_epoch != STATIC_LEAVE_EPOCH:
                        return None, self._refuse(
                            gid, hb, GroupError.UNRELEASED_INSTANCE_ID,
                            f"Static member with unknown member id and instance id "
                            f"{hb.instance_id} cannot join the group because the instance "
                            f"id is owned by member {previous_id}.")
                    return self._replace_static(group, previous, hb), None
            member_id = hb.member_id or str(uuid.uuid4())
            member = group.members.get(member_id)
            if member is None:
                member = group.members[member_id] = ConsumerMember(member_id)
                member.client_id, member.client_host = hb.client_id, hb.client_host
            elif member.assigned or member.pending_revocation:
                # A member that comes back with epoch 0 has lost its partitions.
                self._release(group, member, member.assigned)
                self._release(group, member, member.pending_revocation)
                member.assigned, member.pending_revocation = {}, {}
                member.member_epoch, member.state = 0, STABLE
            if hb.instance_id is not None:
                member.instance_id = hb.instance_id
                group.static_members[hb.instance_id] = member_id
            return member, None
        member = group.members.get(hb.member_id)
        if member is None:
            return None, self._refuse(gid, hb, GroupError.UNKNOWN_MEMBER,
                                      f"Member {hb.member_id} is not a member of group {gid}.")
        if hb.member_epoch > member.member_epoch or (
            hb.member_epoch < member.member_epoch and not (
                # The answer that moved it on may have been lost: accept the previous
                # epoch while what it owns is part of its assignment.
                hb.member_epoch == member.previous_epoch
                and _subset(hb.owned or {}, member.assigned))):
            return None, self._refuse(
                gid, hb, GroupError.FENCED_MEMBER_EPOCH,
                f"The consumer group member has a greater member epoch "
                f"({hb.member_epoch}) than the one known by the group coordinator "
                f"({member.member_epoch}). The member must abandon all its partitions "
                f"and rejoin." if hb.member_epoch > member.member_epoch else
                f"The consumer group member has a smaller member epoch "
                f"({hb.member_epoch}) than the one known by the group coordinator "
                f"({member.member_epoch}). The member must abandon all its partitions "
                f"and rejoin.")
        return member, None

    def _replace_static(
        self, group: ConsumerGroup, previous: ConsumerMember, hb: ConsumerHeartbeat
    ) -> ConsumerMember:
        """A static member's new incarnation takes its place, epoch and assignment."""
        member_id = hb.member_id or str(uuid.uuid4())
        self._cancel_timers(previous)
        del group.members[previous.member_id]
        old_id, previous.member_id = previous.member_id, member_id
        previous.member_epoch = previous.previous_epoch if previous.previous_epoch > 0 else 0
        previous.client_id, previous.client_host = hb.client_id, hb.client_host
        group.members[member_id] = previous
        group.static_members[hb.instance_id or ""] = member_id
        if old_id in group.target:
            group.target[member_id] = group.target.pop(old_id)
        for tp, owner in group.owners.items():
            if owner == old_id:
                group.owners[tp] = member_id
        log.info("static member rejoined", extra={"fields": {
            "group": group.group_id, "instance_id": hb.instance_id, "member_id": member_id,
            "previous_member_id": old_id}})
        return previous

    def _update_subscription(self, member: ConsumerMember, hb: ConsumerHeartbeat) -> bool:
        changed = member.member_epoch == JOIN_EPOCH and not member.assigned
        if hb.rebalance_timeout_ms >= 0:
            member.rebalance_timeout_ms = hb.rebalance_timeout_ms
        if hb.rack_id is not None:
            member.rack_id = hb.rack_id
        if hb.subscribed_topic_names is not None:
            names = tuple(sorted(set(hb.subscribed_topic_names)))
            changed |= names != member.topic_names
            member.topic_names = names
        if hb.subscribed_topic_regex is not None:
            regex = hb.subscribed_topic_regex or None
            changed |= regex != member.regex
            member.regex = regex
        if hb.server_assignor is not None:
            changed |= hb.server_assignor != member.assignor
            member.assignor = hb.server_assignor
        return changed

    def _subscribed(self, member: ConsumerMember) -> frozenset[str]:
        """The existing topics a member subscribes to, by name or by regex.

        RE2/J syntax is read with Python's ``re`` (full match, as Kafka matches a topic
        name): the common subset (classes, alternation, repetition, anchors) means the
        same; RE2-only constructs are refused as invalid expressions."""
        names = {t for t in member.topic_names if self.topics.get(t) is not None}
        if member.regex:
            pattern = re.compile(member.regex)
            names.update(t.name for t in self.topics if pattern.fullmatch(t.name))
        return frozenset(names)

    def _partitions_changed(self, group: ConsumerGroup) -> bool:
        return self._subscription_metadata(group) != group.subscribed_partitions

    def _subscription_metadata(self, group: ConsumerGroup) -> dict[str, int]:
        topics: set[str] = set()
        for m in group.members.values():
            topics |= self._subscribed(m)
        counts: dict[str, int] = {}
        for name in sorted(topics):
            topic = self.topics.get(name)
            if topic is not None:
                counts[name] = len(topic.partitions)
        return counts

    def _bump(self, group: ConsumerGroup, reason: str) -> None:
        """A new group epoch and, at once, its target assignment."""
        group.group_epoch += 1
        group.subscribed_partitions = self._subscription_metadata(group)
        votes: dict[str, int] = {}
        for m in group.members.values():
            if m.assignor:
                votes[m.assignor] = votes.get(m.assignor, 0) + 1
        name = max(votes, key=lambda a: (votes[a], a)) if votes else self.assignors[0]
        group.assignor_name = name
        subscriptions = {mid: self._subscribed(m) for mid, m in group.members.items()}
        group.target = ASSIGNORS[name](subscriptions, group.subscribed_partitions,
                                       group.target)
        group.assignment_epoch = group.group_epoch
        log.info("consumer group target assignment computed", extra={"fields": {
            "group": group.group_id, "group_epoch": group.group_epoch, "assignor": name,
            "members": len(group.members), "reason": reason}})

    def _reconcile(
        self, group: ConsumerGroup, member: ConsumerMember, owned: Assignment | None
    ) -> None:
        if member.state == UNREVOKED:
            if owned is None or _intersect(owned, member.pending_revocation):
                return  # still revoking
            self._release(group, member, member.pending_revocation)
            member.pending_revocation = {}
            if member.revocation_deadline is not None:
                member.revocation_deadline.cancel()
                member.revocation_deadline = None
            member.state = STABLE
        if member.member_epoch == group.assignment_epoch and member.state == STABLE:
            return
        target = group.target.get(member.member_id, {})
        revoking = _without(member.assigned, target)
        if revoking:
            member.assigned = _intersect(member.assigned, target)
            member.pending_revocation = revoking
            member.state = UNREVOKED
            loop = asyncio.get_running_loop()
            member.revocation_deadline = loop.call_later(
                member.rebalance_timeout_ms / 1000, self._revocation_expired, group, member)
            return
        wanted = _without(target, member.assigned)
        assigned = {t: set(ps) for t, ps in member.assigned.items()}
        unreleased = False
        for topic, ps in wanted.items():
            for p in ps:
                owner = group.owners.get((topic, p))
                if owner is None or owner == member.member_id:
                    assigned.setdefault(topic, set()).add(p)
                    group.owners[(topic, p)] = member.member_id
                else:
                    unreleased = True
        member.assigned = {t: frozenset(ps) for t, ps in assigned.items() if ps}
        if member.member_epoch != group.assignment_epoch:
            member.previous_epoch = member.member_epoch
            member.member_epoch = group.assignment_epoch
        member.state = UNRELEASED if unreleased else STABLE

    def _release(self, group: ConsumerGroup, member: ConsumerMember, what: Assignment) -> None:
        for topic, ps in what.items():
            for p in ps:
                if group.owners.get((topic, p)) == member.member_id:
                    del group.owners[(topic, p)]

    # -- leaving and expiry ---------------------------------------------------------

    def _leave(self, group_id: str, hb: ConsumerHeartbeat) -> HeartbeatResult:
        group = self._groups.get(group_id)
        member = None
        if group is not None:
            member_id = hb.member_id
            if hb.instance_id is not None:
                member_id = group.static_members.get(hb.instance_id, "")
                if member_id and hb.member_id and member_id != hb.member_id:
                    return self._refuse(group_id, hb, GroupError.FENCED_INSTANCE,
                                        f"Static member {hb.member_id} with instance id "
                                        f"{hb.instance_id} is not the member of the group.")
            member = group.members.get(member_id)
        if group is None or member is None:
            return self._refuse(group_id, hb, GroupError.UNKNOWN_MEMBER,
                                f"Member {hb.member_id} is not a member of group {group_id}.")
        if hb.member_epoch == STATIC_LEAVE_EPOCH:
            # It keeps its place and partitions until it comes back or its session ends.
            if member.member_epoch > 0:
                member.previous_epoch = member.member_epoch
            member.member_epoch = STATIC_LEAVE_EPOCH
            log.info("static member left temporarily", extra={"fields": {
                "group": group_id, "member_id": member.member_id,
                "instance_id": member.instance_id}})
        else:
            self._remove(group, member, "member left the group")
        return HeartbeatResult(None, None, hb.member_id, hb.member_epoch,
                               self.heartbeat_interval_ms)

    def _remove(self, group: ConsumerGroup, member: ConsumerMember, reason: str) -> None:
        self._cancel_timers(member)
        self._release(group, member, member.assigned)
        self._release(group, member, member.pending_revocation)
        group.members.pop(member.member_id, None)
        group.target.pop(member.member_id, None)
        if member.instance_id is not None and \
                group.static_members.get(member.instance_id) == member.member_id:
            del group.static_members[member.instance_id]
        log.info("consumer group member removed", extra={"fields": {
            "group": group.group_id, "member_id": member.member_id, "reason": reason}})
        self._bump(group, reason)

    def _cancel_timers(self, member: ConsumerMember) -> None:
        for timer in (member.expiry, member.revocation_deadline):
            if timer is not None:
                timer.cancel()
        member.expiry = member.revocation_deadline = None

    def _expect_heartbeat(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        if member.expiry is not None:
            member.expiry.cancel()
        member.expiry = asyncio.get_running_loop().call_later(
            self.session_timeout_ms / 1000, self._expired, group, member)

    def _expired(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        if group.members.get(member.member_id) is member:
            self._remove(group, member, "session timeout expired")

    def _revocation_expired(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        if group.members.get(member.member_id) is member and member.state == UNREVOKED:
            self._remove(group, member, "partitions not revoked within the rebalance timeout")

    # -- offsets and deletion -------------------------------------------------------

    def check_offsets(
        self, group: ConsumerGroup, member_id: str | None, member_epoch: int, *,
        fetch: bool = False,
    ) -> GroupError | None:
        """Kafka 4's checks of an offset commit or fetch against a consumer group.

        A commit without an epoch (an admin client, or a consumer assigning partitions
        itself) is accepted while the group has no members; a fetch without member id
        and epoch always is. Otherwise the member must exist (UNKNOWN_MEMBER_ID) and
        name its current epoch (STALE_MEMBER_EPOCH)."""
        if member_epoch < 0 and (member_id is None if fetch else not group.members):
            return None
        member = group.members.get(member_id or "")
        if member is None:
            return GroupError.UNKNOWN_MEMBER
        if member_epoch != member.member_epoch:
            return GroupError.STALE_MEMBER_EPOCH
        return None

    def consumes(self, group: ConsumerGroup) -> Callable[[str], bool]:
        subscribed: set[str] = set()
        for m in group.members.values():
            subscribed |= self._subscribed(m)
        return subscribed.__contains__

    def member_counts(self) -> Iterable[tuple[str, int]]:
        for group in self._groups.values():
            yield group.group_id, len(group.members)
