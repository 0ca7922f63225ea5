# Over 500 lines: Kafka's classic-protocol state machine is one unit (its GroupCoordinator).
"""The group coordinator: joins, syncs, heartbeats, leaves and rebalances of every group.

The classic group protocol's state machine as Kafka's group coordinator runs it:
Empty -> PreparingRebalance -> CompletingRebalance -> Stable, and Dead once deleted.
Member metadata and assignments are opaque bytes here; the protocol layer reads and
writes them. Everything runs on the event loop, so the deadlines (session expiry, the
rebalance and sync deadlines, the initial rebalance delay) are loop timers and nothing
needs a lock. A JoinGroup or SyncGroup that has to wait for the rest of the group gets
a future that the rebalance resolves.

Committed offsets are durable (``offsets.CommittedOffsets``); membership is not, as in
Kafka: after a restart the groups with offsets exist again as Empty and their members
rejoin. The group model (states, members, results) is ``model.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from portask import metrics
from portask.broker.definitions import Definitions
from portask.broker.kafka.groups.consumer import (
    ConsumerGroups,
    ConsumerHeartbeat,
    HeartbeatResult,
)
from portask.broker.kafka.groups.model import (
    CAN_REBALANCE,
    COMPLETING,
    DEAD,
    EMPTY,
    NEW_MEMBER_JOIN_TIMEOUT_MS,
    PREPARING,
    STABLE,
    UNKNOWN_MEMBER_ID,
    Group,
    GroupError,
    JoinRequest,
    JoinResult,
    Member,
    OffsetEntry,
    SyncResult,
    TopicPartition,
    answer_join,
    answer_sync,
    check_member,
)
from portask.broker.kafka.groups.offsets import CommittedOffsets
from portask.broker.kafka.topics import Topics
from portask.config import Settings

log = logging.getLogger("portask.groups")


def _done(future: asyncio.Future[Any], result: Any) -> asyncio.Future[Any]:
    future.set_result(result)
    return future


class Groups:
    """The group coordinator: every group of this broker, and their committed offsets."""

    def __init__(self, settings: Settings, definitions: Definitions, topics: Topics) -> None:
        k = settings.kafka
        self.min_session_timeout_ms = int(k.group_min_session_timeout_ms)
        self.max_session_timeout_ms = int(k.group_max_session_timeout_ms)
        self.initial_rebalance_delay_ms = int(k.group_initial_rebalance_delay_ms)
        self.definitions = definitions
        self.topics = topics
        self.stored = CommittedOffsets(definitions, topics)
        self._groups: dict[str, Group] = {}
        # Consumer-protocol groups (KIP-848); a group id is classic or consumer.
        self.consumer = ConsumerGroups(
            topics,
            session_timeout_ms=int(k.group_consumer_session_timeout_ms),
            heartbeat_interval_ms=int(k.group_consumer_heartbeat_interval_ms),
            assignors=["uniform", "range"],
        )
        metrics.bind_group_gauges(self.lag, self.member_counts)

    # -- lookups -------------------------------------------------------------------

    def get(self, group_id: str) -> Group | None:
        group = self._groups.get(group_id)
        if group is None and self.stored.has_group(group_id) and \
                self.consumer.get(group_id) is None:
            # A group known only by its offsets (after a restart, or committed by a
            # transaction) exists as Empty, as Kafka loads it from __consumer_offsets.
            group = self._groups[group_id] = Group(group_id)
        return group

    def __iter__(self) -> Iterator[Group]:
        for group_id, _, _ in self.stored.partition_keys():
            if group_id not in self._groups and self.consumer.get(group_id) is None:
                self._groups[group_id] = Group(group_id)
        return iter(list(self._groups.values()))

    def lag(self) -> Iterator[tuple[str, str, int, int]]:
        return self.stored.lag()

    def offsets(self) -> Iterator[tuple[str, str, int, int, int]]:
        return self.stored.rows()

    def member_counts(self) -> Iterator[tuple[str, int]]:
        for group in self._groups.values():
            yield group.group_id, len(group.members)
        yield from self.consumer.member_counts()

    # -- JoinGroup -----------------------------------------------------------------

    def join(self, group_id: str, request: JoinRequest) -> asyncio.Future[JoinResult]:
        """Resolves when the member's place in the next generation is known."""
        waiter: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        if not group_id:
            _refused("join", group_id, request.member_id, GroupError.INVALID_GROUP_ID)
            return _done(waiter, JoinResult(GroupError.INVALID_GROUP_ID, request.member_id))
        timeout = request.session_timeout_ms
        if not self.min_session_timeout_ms <= timeout <= self.max_session_timeout_ms:
            _refused("join", group_id, request.member_id, GroupError.INVALID_SESSION_TIMEOUT,
                     session_timeout_ms=timeout, allowed=f"{self.min_session_timeout_ms}-"
                     f"{self.max_session_timeout_ms}")
            return _done(waiter, JoinResult(GroupError.INVALID_SESSION_TIMEOUT, request.member_id))
        if self.consumer.has_members(group_id):
            # Classic members do not join a consumer-protocol group here (Kafka 4 with
            # group.consumer.migration.policy=disabled answers the same).
            _refused("join", group_id, request.member_id, GroupError.INCONSISTENT_PROTOCOL,
                     group_type="consumer")
            return _done(waiter, JoinResult(GroupError.INCONSISTENT_PROTOCOL, request.member_id))
        self.consumer.forget(group_id)  # an empty consumer group becomes classic
        new_member = request.member_id == UNKNOWN_MEMBER_ID
        group = self._groups.get(group_id)
        if group is None:
            if not new_member:
                _refused("join", group_id, request.member_id, GroupError.UNKNOWN_MEMBER)
                return _done(waiter, JoinResult(GroupError.UNKNOWN_MEMBER, request.member_id))
            group = self._groups[group_id] = Group(group_id)
        if new_member:
            self._join_new_member(group, request, waiter)
        else:
            self._join_current_member(group, request, waiter)
        if group.state is PREPARING:
            self._try_complete_join(group)
        return waiter

    def _join_new_member(
        self, group: Group, request: JoinRequest, waiter: asyncio.Future[JoinResult]
    ) -> None:
        if group.state is DEAD:
            waiter.set_result(JoinResult(GroupError.COORDINATOR_NOT_AVAILABLE, UNKNOWN_MEMBER_ID))
            return
        if not group.supports_protocols(request.protocol_type, request.protocols):
            _refused("join", group.group_id, "", GroupError.INCONSISTENT_PROTOCOL,
                     protocol_type=request.protocol_type,
                     protocols=[name for name, _ in request.protocols])
            waiter.set_result(JoinResult(GroupError.INCONSISTENT_PROTOCOL, UNKNOWN_MEMBER_ID))
            return
        new_id = f"{request.instance_id or request.client_id}-{uuid.uuid4()}"
        if request.instance_id is not None:
            old_id = group.static_members.get(request.instance_id)
            if old_id is not None:
                self._rejoin_static_member(group, old_id, new_id, request, waiter)
            else:
                self._add_member_and_rebalance(group, new_id, request, waiter)
        elif request.require_known_member_id:
            # KIP-394: remember the id, and forget it if the member does not come back.
            loop = asyncio.get_running_loop()
            group.pending_members[new_id] = loop.call_later(
                request.session_timeout_ms / 1000, self._pending_member_expired, group, new_id
            )
            waiter.set_result(JoinResult(GroupError.MEMBER_ID_REQUIRED, new_id))
        else:
            self._add_member_and_rebalance(group, new_id, request, waiter)

    def _join_current_member(
        self, group: Group, request: JoinRequest, waiter: asyncio.Future[JoinResult]
    ) -> None:
        member_id = request.member_id
        if group.state is DEAD:
            waiter.set_result(JoinResult(GroupError.COORDINATOR_NOT_AVAILABLE, member_id))
            return
        if not group.supports_protocols(request.protocol_type, request.protocols):
            _refused("join", group.group_id, member_id, GroupError.INCONSISTENT_PROTOCOL,
                     protocol_type=request.protocol_type)
            waiter.set_result(JoinResult(GroupError.INCONSISTENT_PROTOCOL, member_id))
            return
        if member_id in group.pending_members:
            if request.instance_id is not None:  # pending ids are only given to dynamic members
                waiter.set_result(JoinResult(GroupError.UNKNOWN_MEMBER, member_id))
                return
            self._add_member_and_rebalance(group, member_id, request, waiter)
            return
        error = check_member(group, member_id, request.instance_id)
        if error is not None:
            _refused("join", group.group_id, member_id, error)
            waiter.set_result(JoinResult(error, member_id))
            return
        member = group.members[member_id]
        if group.state is PREPARING:
            self._update_member_and_rebalance(group, member, request, waiter, "member rejoined")
        elif group.state is COMPLETING:
            if member.matches(request.protocols):
                # It probably missed the answer to its first JoinGroup: answer it again.
                waiter.set_result(self._generation_result(group, member_id))
            else:
                self._update_member_and_rebalance(
                    group, member, request, waiter, "member metadata changed"
                )
        elif group.state is STABLE:
            if group.is_leader(member_id):
                # A leader rejoins to have a new assignment made (topic metadata changed).
                self._update_member_and_rebalance(group, member, request, waiter, "leader rejoined")
            elif not member.matches(request.protocols):
                self._update_member_and_rebalance(
                    group, member, request, waiter, "member metadata changed"
                )
            else:
                waiter.set_result(self._generation_result(group, member_id, leader_view=False))
        else:  # Empty with members cannot happen; let the member reset and rejoin
            waiter.set_result(JoinResult(GroupError.UNKNOWN_MEMBER, member_id))

    def _generation_result(
        self, group: Group, member_id: str, *, leader_view: bool = True
    ) -> JoinResult:
        leader = group.is_leader(member_id) and leader_view
        return JoinResult(
            None, member_id, group.generation, group.protocol_type, group.protocol_name,
            group.leader_id or "", group.member_list() if leader else [],
        )

    def _add_member_and_rebalance(
        self, group: Group, member_id: str, request: JoinRequest,
        waiter: asyncio.Future[JoinResult],
    ) -> None:
        member = Member(member_id, request)
        member.is_new = True
        if group.state is PREPARING and group.generation == 0:
            group.new_member_added = True  # lets the initial rebalance delay extend itself
        group.add(member, waiter)
        self._expect_heartbeat(group, member, NEW_MEMBER_JOIN_TIMEOUT_MS)
        self._maybe_prepare_rebalance(group, _why(f"member {member_id} joined", request))

    def _update_member_and_rebalance(
        self, group: Group, member: Member, request: JoinRequest,
        waiter: asyncio.Future[JoinResult], reason: str,
    ) -> None:
        group.update_member(member, request, waiter)
        self._maybe_prepare_rebalance(group, _why(f"{reason}: {member.member_id}", request))

    def _rejoin_static_member(
        self, group: Group, old_id: str, new_id: str, request: JoinRequest,
        waiter: asyncio.Future[JoinResult],
    ) -> None:
        """KIP-345: a known group.instance.id takes over its old place without a rebalance."""
        assert request.instance_id is not None
        previous_leader = group.leader_id or ""
        member = group.replace_static_member(request.instance_id, old_id, new_id)
        self._expect_heartbeat(group, member)
        group.update_member(member, request, waiter)
        if group.state is STABLE:
            if group.protocol_name != group.select_protocol():
                self._maybe_prepare_rebalance(group, f"static member {new_id} changed protocols")
                return
            log.info(
                "static member rejoined without a rebalance",
                extra={"fields": {"group": group.group_id, "instance_id": request.instance_id,
                                  "member_id": new_id, "generation": group.generation}},
            )
            if request.supports_skip_assignment:
                # KIP-814: a leader learns it leads but must not reassign a stable group.
                leader = group.is_leader(new_id)
                result = self._generation_result(group, new_id)
                result.skip_assignment = leader
            else:
                # Older clients are given the previous leader id, so that a rejoining
                # leader does not think it leads and computes no new assignment.
                result = JoinResult(
                    None, new_id, group.generation, group.protocol_type, group.protocol_name,
                    previous_leader,
                )
            answer_join(member, result)
        elif group.state is COMPLETING:
            # The leader may be assigning to the old member id: start over.
            self._prepare_rebalance(group, f"static member {new_id} replaced {old_id}")
        # PreparingRebalance: the member simply waits for the rebalance with the others.

    # -- rebalancing -----------------------------------------------------------------

    def _maybe_prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.state in CAN_REBALANCE:
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.state is COMPLETING:
            self._reset_and_propagate(group, GroupError.REBALANCE_IN_PROGRESS)
        self._cancel_sync_deadline(group)
        if group.join_timer is not None:
            group.join_timer.cancel()
        loop = asyncio.get_running_loop()
        initial = group.state is EMPTY
        log.info(
            "preparing to rebalance group",
            extra={"fields": {"group": group.group_id, "state": group.state.value,
                              "generation": group.generation, "reason": reason}},
        )
        group.state = PREPARING
        if initial:
            # group.initial.rebalance.delay.ms: wait for more members of a starting group,
            # extending the wait while new ones keep arriving, up to the rebalance timeout.
            delay = self.initial_rebalance_delay_ms
            remaining = max(group.rebalance_timeout_ms - delay, 0)
            group.in_initial_delay = True
            group.join_timer = loop.call_later(
                delay / 1000, self._initial_delay_over, group, delay, remaining
            )
        else:
            group.in_initial_delay = False
            group.join_timer = loop.call_later(
                group.rebalance_timeout_ms / 1000, self._complete_join, group
            )
            self._try_complete_join(group)

    def _initial_delay_over(self, group: Group, delay: int, remaining: int) -> None:
        group.join_timer = None
        if group.new_member_added and remaining > 0:
            group.new_member_added = False
            step = min(delay, remaining)
            group.join_timer = asyncio.get_running_loop().call_later(
                step / 1000, self._initial_delay_over, group, step, remaining - step
            )
            return
        group.in_initial_delay = False
        self._complete_join(group)

    def _try_complete_join(self, group: Group) -> None:
        if (
            group.state is PREPARING
            and not group.in_initial_delay
            and group.has_all_members_joined()
        ):
            self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        """The join phase is over: drop who did not rejoin, start the next generation."""
        if group.join_timer is not None:
            group.join_timer.cancel()
            group.join_timer = None
        group.in_initial_delay = False
        if group.state is not PREPARING:
            return
        gone = [m for m in group.members.values() if not m.awaiting_join and m.instance_id is None]
        for member in gone:
            group.remove(member.member_id)
        if gone:
            log.info(
                "removed members that did not rejoin",
                extra={"fields": {"group": group.group_id,
                                  "members": [m.member_id for m in gone]}},
            )
        if group.members and not group.elect_joined_leader():
            # Only static members that have not rejoined are left: wait for them, or for
            # their session timeouts to remove them.
            log.error(
                "group could not complete its rebalance because no member rejoined",
                extra={"fields": {"group": group.group_id}},
            )
            group.join_timer = asyncio.get_running_loop().call_later(
                group.rebalance_timeout_ms / 1000, self._complete_join, group
            )
            return
        group.generation += 1
        group.pending_sync.clear()
        if not group.members:
            group.state = EMPTY
            group.protocol_name = None
            log.info(
                "group is now empty",
                extra={"fields": {"group": group.group_id, "generation": group.generation}},
            )
            return
        group.state = COMPLETING
        group.protocol_name = group.select_protocol()
        metrics.KAFKA_GROUP_REBALANCES.labels(group.group_id).inc()
        log.info(
            "stabilized group",
            extra={"fields": {"group": group.group_id, "generation": group.generation,
                              "protocol": group.protocol_name, "members": len(group.members),
                              "leader": group.leader_id}},
        )
        for member in list(group.members.values()):
            answer_join(member, self._generation_result(group, member.member_id))
            self._expect_heartbeat(group, member)
            member.is_new = False
            group.pending_sync.add(member.member_id)
        # Members that never send their SyncGroup are removed at the rebalance timeout.
        group.sync_timer = asyncio.get_running_loop().call_later(
            group.rebalance_timeout_ms / 1000, self._sync_deadline, group, group.generation
        )

    def _sync_deadline(self, group: Group, generation: int) -> None:
        group.sync_timer = None
        if generation != group.generation or group.state not in (COMPLETING, STABLE):
            return
        if not group.pending_sync:
            return
        missing = sorted(group.pending_sync)
        for member_id in missing:
            member = group.remove(member_id)
            if member is not None:
                answer_sync(member, SyncResult(GroupError.UNKNOWN_MEMBER))
        self._prepare_rebalance(group, f"members {missing} sent no SyncGroup in time")

    def _cancel_sync_deadline(self, group: Group) -> None:
        group.pending_sync.clear()
        if group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    def _propagate(self, group: Group, error: GroupError | None) -> None:
        protocol_type, protocol_name = (
            (group.protocol_type, group.protocol_name) if error is None else (None, None)
        )
        for member in group.members.values():
            if member.sync_waiter is not None:
                answer_sync(
                    member, SyncResult(error, member.assignment, protocol_type, protocol_name)
                )
                # Its session restarts now: an expiry while it waited was ignored.
                self._expect_heartbeat(group, member)

    def _reset_and_propagate(self, group: Group, error: GroupError) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate(group, error)

    # -- SyncGroup -------------------------------------------------------------------

    def sync(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
    ) -> asyncio.Future[SyncResult]:
        """Resolves with the member's assignment once the leader has sent it."""
        waiter: asyncio.Future[SyncResult] = asyncio.get_running_loop().create_future()
        group = self._groups.get(group_id)
        if not group_id or group is None:
            error = GroupError.UNKNOWN_MEMBER if group_id else GroupError.INVALID_GROUP_ID
            _refused("sync", group_id, member_id, error)
            return _done(waiter, SyncResult(error))
        error = self._check_generation(group, member_id, instance_id, generation)
        if error is None and (
            (protocol_type is not None and protocol_type != group.protocol_type)
            or (protocol_name is not None and protocol_name != group.protocol_name)
        ):
            error = GroupError.INCONSISTENT_PROTOCOL
        if error is None and group.state is EMPTY:
            error = GroupError.UNKNOWN_MEMBER
        if error is None and group.state is PREPARING:
            error = GroupError.REBALANCE_IN_PROGRESS
        if error is not None:
            _refused_in_generation("sync", group, member_id, error, generation)
            return _done(waiter, SyncResult(error))
        member = group.members[member_id]
        self._synced(group, member_id)
        if group.state is STABLE:
            self._expect_heartbeat(group, member)
            return _done(
                waiter,
                SyncResult(None, member.assignment, group.protocol_type, group.protocol_name),
            )
        member.sync_waiter = waiter
        if group.is_leader(member_id):
            missing = [m for m in group.members if m not in assignments]
            if missing:
                log.warning(
                    "leader left members without an assignment; they get an empty one",
                    extra={"fields": {"group": group_id, "generation": generation,
                                      "members": missing}},
                )
            for m in group.members.values():
                m.assignment = assignments.get(m.member_id, b"")
            group.state = STABLE
            self._propagate(group, None)
        return waiter

    def _synced(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync and group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    # -- Heartbeat and LeaveGroup ----------------------------------------------------

    def heartbeat(
        self, group_id: str, member_id: str, instance_id: str | None, generation: int
    ) -> GroupError | None:
        group = self._groups.get(group_id)
        if not group_id or group is None:
            error = GroupError.UNKNOWN_MEMBER if group_id else GroupError.INVALID_GROUP_ID
            _refused("heartbeat", group_id, member_id, error)
            return error
        error = self._check_generation(group, member_id, instance_id, generation)
        if error is not None:
            _refused("heartbeat", group_id, member_id, error, generation=generation,
                     current_generation=group.generation)
            return error
        if group.state is EMPTY:
            return GroupError.UNKNOWN_MEMBER
        self._expect_heartbeat(group, group.members[member_id])
        if group.state is PREPARING:
            return GroupError.REBALANCE_IN_PROGRESS
        return None

    def leave(
        self, group_id: str, leaving: list[tuple[str, str | None]]
    ) -> tuple[GroupError | None, list[GroupError | None]]:
        """Remove members given as (member id, group.instance.id); one answer per member."""
        if not group_id:
            return GroupError.INVALID_GROUP_ID, []
        group = self._groups.get(group_id)
        if group is None:
            return None, [GroupError.UNKNOWN_MEMBER] * len(leaving)
        if group.state is DEAD:
            return GroupError.COORDINATOR_NOT_AVAILABLE, []
        answers: list[GroupError | None] = []
        for member_id, instance_id in leaving:
            if member_id == UNKNOWN_MEMBER_ID:
                # Administrative removal of a static member by its instance id.
                current = group.static_members.get(instance_id) if instance_id else None
                if current is None:
                    answers.append(GroupError.UNKNOWN_MEMBER)
                    continue
                member_id = current
            elif member_id in group.pending_members:
                group.remove(member_id)
                if group.state is PREPARING:
                    self._try_complete_join(group)
                answers.append(None)
                continue
            else:
                error = check_member(group, member_id, instance_id)
                if error is not None:
                    answers.append(error)
                    continue
            log.info("member left the group",
                     extra={"fields": {"group": group_id, "member_id": member_id}})
            self._remove_member(group, group.members[member_id], "member left")
            answers.append(None)
        return None, answers

    def _remove_member(self, group: Group, member: Member, reason: str) -> None:
        # A new member may be waiting for its JoinGroup: tell it to start over.
        answer_join(member, JoinResult(GroupError.UNKNOWN_MEMBER, UNKNOWN_MEMBER_ID))
        answer_sync(member, SyncResult(GroupError.UNKNOWN_MEMBER))
        group.remove(member.member_id)
        if group.state in (STABLE, COMPLETING):
            self._maybe_prepare_rebalance(group, f"{reason}: {member.member_id}")
        elif group.state is PREPARING:
            self._try_complete_join(group)

    # -- session timeouts ----------------------------------------------------------

    def _expect_heartbeat(
        self, group: Group, member: Member, timeout_ms: int | None = None
    ) -> None:
        """Restart the member's session: it is removed unless it is heard from in time."""
        if member.expiry is not None:
            member.expiry.cancel()
        timeout = member.session_timeout_ms if timeout_ms is None else timeout_ms
        member.expiry = asyncio.get_running_loop().call_later(
            timeout / 1000, self._member_expired, group, member
        )

    def _member_expired(self, group: Group, member: Member) -> None:
        member.expiry = None
        if group.members.get(member.member_id) is not member:
            return
        if not member.is_new and (member.awaiting_join or member.sync_waiter is not None):
            return  # it is waiting on the rebalance; the answer restarts its session
        log.info(
            "member session expired; removing it from the group",
            extra={"fields": {"group": group.group_id, "member_id": member.member_id,
                              "session_timeout_ms": member.session_timeout_ms}},
        )
        self._remove_member(group, member, "session timeout")

    def _pending_member_expired(self, group: Group, member_id: str) -> None:
        if group.pending_members.pop(member_id, None) is None:
            return
        log.info("member id handed out was never used; forgetting it",
                 extra={"fields": {"group": group.group_id, "member_id": member_id}})
        if group.state is PREPARING:
            self._try_complete_join(group)

    # -- checks ----------------------------------------------------------------------

    def _check_generation(
        self, group: Group, member_id: str, instance_id: str | None, generation: int
    ) -> GroupError | None:
        if group.state is DEAD:
            return GroupError.COORDINATOR_NOT_AVAILABLE
        error = check_member(group, member_id, instance_id)
        if error is None and generation != group.generation:
            return GroupError.ILLEGAL_GENERATION
        return error

    # -- ConsumerGroupHeartbeat (KIP-848) ----------------------------------------------

    def consumer_heartbeat(self, group_id: str, request: ConsumerHeartbeat) -> HeartbeatResult:
        classic = self._groups.get(group_id)
        if classic is not None:
            if classic.members or classic.state is not EMPTY:
                message = f"Group {group_id} is not a consumer group."
                _refused("consumer heartbeat", group_id, request.member_id,
                         GroupError.GROUP_NOT_FOUND, group_type="classic")
                return HeartbeatResult(GroupError.GROUP_NOT_FOUND, message,
                                       request.member_id, request.member_epoch)
            # An empty classic group (offsets only) becomes a consumer group; its
            # committed offsets stay, as in Kafka's online upgrade.
            self._groups.pop(group_id)
            log.info("empty classic group converted to a consumer group",
                     extra={"fields": {"group": group_id}})
        return self.consumer.heartbeat(group_id, request)

    def check_offset_fetch(
        self, group_id: str, member_id: str | None, member_epoch: int
    ) -> GroupError | None:
        group = self.consumer.get(group_id)
        if group is None:
            return None
        return self.consumer.check_offsets(group, member_id, member_epoch, fetch=True)

    # -- DeleteGroups ------------------------------------------------------------------

    def delete(self, group_ids: Iterable[str]) -> dict[str, GroupError | None]:
        results: dict[str, GroupError | None] = {}
        for group_id in group_ids:
            consumer = self.consumer.get(group_id)
            if consumer is not None and consumer.members:
                results[group_id] = GroupError.NON_EMPTY_GROUP
                continue
            if consumer is not None:
                self.consumer.forget(group_id)
                self.stored.drop(
                    group_id, [(t, p) for g, t, p in self.stored.partition_keys() if g == group_id]
                )
                log.info("group deleted", extra={"fields": {"group": group_id}})
                results[group_id] = None
                continue
            group = self.get(group_id)
            if group is None or group.state is DEAD:
                results[group_id] = GroupError.GROUP_NOT_FOUND
            elif group.state is not EMPTY:
                results[group_id] = GroupError.NON_EMPTY_GROUP
            else:
                removed = self.stored.drop(
                    group_id, [(t, p) for g, t, p in self.stored.partition_keys() if g == group_id]
                )
                self._forget(group)
                log.info("group deleted",
                         extra={"fields": {"group": group_id, "offsets_removed": removed}})
                results[group_id] = None
        return results

    def _forget(self, group: Group) -> None:
        group.state = DEAD
        self._groups.pop(group.group_id, None)
        # A group may never have rebalanced, and then has no series to remove.
        with contextlib.suppress(KeyError):
            metrics.KAFKA_GROUP_REBALANCES.remove(group.group_id)

    # -- offsets -----------------------------------------------------------------------

    def commit_offsets(
        self,
        group_id: str,
        member_id: str,
        instance_id: str | None,
        generation: int,
        offsets: dict[TopicPartition, OffsetEntry],
    ) -> GroupError | None:
        """Store offsets for the group, or say why the whole commit is refused."""
        consumer = self.consumer.get(group_id)
        if consumer is not None:
            refusal = self.consumer.check_offsets(consumer, member_id, generation)
            if refusal is not None:
                _refused("commit", group_id, member_id, refusal, member_epoch=generation)
                return refusal
            self.stored.store(group_id, offsets)
            return None
        group = self.get(group_id)
        if group is None:
            if generation >= 0:
                # A commit from a generation of a group that no longer exists.
                _refused("commit", group_id, member_id, GroupError.ILLEGAL_GENERATION,
                         generation=generation)
                return GroupError.ILLEGAL_GENERATION
            log.info("simple consumer group created by an offset commit",
                     extra={"fields": {"group": group_id}})
            group = self._groups[group_id] = Group(group_id)
        error = self._check_commit(group, member_id, instance_id, generation, transactional=False)
        if error is None and group.state is COMPLETING:
            # The member knows the new generation but has no assignment yet.
            error = GroupError.REBALANCE_IN_PROGRESS
        if error is not None:
            _refused_in_generation("commit", group, member_id, error, generation)
            return error
        member = group.members.get(member_id)
        if member is not None and group.state in (STABLE, PREPARING):
            self._expect_heartbeat(group, member)  # a commit counts as a sign of life
        self.stored.store(group_id, offsets)
        return None

    def _check_commit(
        self, group: Group, member_id: str, instance_id: str | None, generation: int,
        *, transactional: bool,
    ) -> GroupError | None:
        if group.state is DEAD:
            return GroupError.COORDINATOR_NOT_AVAILABLE
        if generation < 0 and group.state is EMPTY:
            return None  # an admin client or a consumer that assigns partitions itself
        if generation >= 0 or member_id != UNKNOWN_MEMBER_ID or instance_id is not None:
            return self._check_generation(group, member_id, instance_id, generation)
        if not transactional and group.state is not EMPTY:
            return GroupError.UNKNOWN_MEMBER  # only members commit for an active group
        return None

    def committed(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetEntry | None]:
        return self.stored.committed(group_id, partitions)

    def delete_offsets(
        self,
        group_id: str,
        partitions: list[TopicPartition],
        subscribed: Callable[[str], bool] | None,
    ) -> tuple[GroupError | None, dict[TopicPartition, GroupError | None]]:
        """OffsetDelete. ``subscribed`` says whether active members consume a topic; None
        when the protocol cannot tell (then an active group refuses every deletion)."""
        consumer = self.consumer.get(group_id)
        if consumer is not None and consumer.members:
            subscribed = self.consumer.consumes(consumer)
        group = self.get(group_id) if consumer is None else Group(group_id)
        if group is None or group.state is DEAD:
            return GroupError.GROUP_NOT_FOUND, {}
        if consumer is not None and consumer.members:
            group.state = STABLE  # an active consumer group refuses its subscribed topics
        results: dict[TopicPartition, GroupError | None] = {}
        if group.state is EMPTY:
            eligible = partitions
        elif subscribed is None:
            return GroupError.NON_EMPTY_GROUP, {}
        else:
            eligible = [tp for tp in partitions if not subscribed(tp[0])]
            results.update(
                {tp: GroupError.SUBSCRIBED_TO_TOPIC for tp in partitions if subscribed(tp[0])}
            )
        removed = self.stored.drop(group_id, eligible)
        results.update({tp: None for tp in eligible})
        if removed:
            log.info("offsets deleted",
                     extra={"fields": {"group": group_id, "offsets_removed": removed}})
        if group.state is EMPTY and not self.stored.has_group(group_id):
            self._forget(group)  # an empty group without offsets is gone, as in Kafka
        return None, results


def _why(reason: str, request: JoinRequest) -> str:
    return f"{reason}; client reason: {request.reason}" if request.reason else reason


def _refused(
    operation: str, group_id: str, member_id: str, error: GroupError, **fields: Any
) -> None:
    log.info(
        f"{operation} refused: {error.name}",
        extra={"fields": {"group": group_id, "member_id": member_id, **fields}},
    )


def _refused_in_generation(
    operation: str, group: Group, member_id: str, error: GroupError, generation: int
) -> None:
    """A refusal naming both generations; a rebalance in progress is routine, not logged."""
    if error is not GroupError.REBALANCE_IN_PROGRESS:
        _refused(operation, group.group_id, member_id, error, generation=generation,
                 current_generation=group.generation)
