"""A consumer group's model: its states, members and generation, and the values the
coordinator (``coordinator.py``) answers with.

Member metadata and assignments are opaque bytes here; the protocol layer reads and
writes them.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

UNKNOWN_MEMBER_ID = ""
NO_GENERATION = -1
# A member that has just joined cannot heartbeat before its JoinGroup is answered, so
# its session timeout cannot expire it; Kafka gives such a join five minutes instead.
NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


EMPTY = GroupState.EMPTY
PREPARING = GroupState.PREPARING_REBALANCE
COMPLETING = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD
CAN_REBALANCE = (STABLE, COMPLETING, EMPTY)


class GroupError(enum.Enum):
    """Why a group operation was refused; each protocol maps these to its own codes."""

    INVALID_GROUP_ID = enum.auto()
    COORDINATOR_NOT_AVAILABLE = enum.auto()
    INVALID_SESSION_TIMEOUT = enum.auto()
    UNKNOWN_MEMBER = enum.auto()
    MEMBER_ID_REQUIRED = enum.auto()
    ILLEGAL_GENERATION = enum.auto()
    REBALANCE_IN_PROGRESS = enum.auto()
    INCONSISTENT_PROTOCOL = enum.auto()
    FENCED_INSTANCE = enum.auto()
    GROUP_NOT_FOUND = enum.auto()
    NON_EMPTY_GROUP = enum.auto()
    SUBSCRIBED_TO_TOPIC = enum.auto()
    # The consumer group protocol's (KIP-848)
    INVALID_REQUEST = enum.auto()
    FENCED_MEMBER_EPOCH = enum.auto()
    STALE_MEMBER_EPOCH = enum.auto()
    UNRELEASED_INSTANCE_ID = enum.auto()
    UNSUPPORTED_ASSIGNOR = enum.auto()
    INVALID_REGULAR_EXPRESSION = enum.auto()


Protocols = list[tuple[str, bytes]]  # (name, metadata) in the member's order of preference
TopicPartition = tuple[str, int]


class OffsetEntry(NamedTuple):
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int


@dataclass(frozen=True, slots=True)
class JoinRequest:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    require_known_member_id: bool  # KIP-394: hand out an id and ask the member to come back
    supports_skip_assignment: bool  # KIP-814: a static leader may rejoin without reassigning
    reason: str | None = None  # the client's, for the log


@dataclass(frozen=True, slots=True)
class JoinedMember:
    member_id: str
    instance_id: str | None
    metadata: bytes


@dataclass(slots=True)
class JoinResult:
    error: GroupError | None
    member_id: str
    generation: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: list[JoinedMember] = field(default_factory=list)
    skip_assignment: bool = False


@dataclass(slots=True)
class SyncResult:
    error: GroupError | None
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


class Member:
    __slots__ = (
        "assignment", "client_host", "client_id", "expiry", "instance_id", "is_new",
        "join_waiter", "member_id", "protocol_type", "protocols", "rebalance_timeout_ms",
        "session_timeout_ms", "sync_waiter",
    )

    def __init__(self, member_id: str, request: JoinRequest) -> None:
        self.member_id = member_id
        self.instance_id = request.instance_id
        self.client_id = request.client_id
        self.client_host = request.client_host
        self.session_timeout_ms = request.session_timeout_ms
        self.rebalance_timeout_ms = request.rebalance_timeout_ms
        self.protocol_type = request.protocol_type
        self.protocols: Protocols = list(request.protocols)
        self.assignment = b""
        self.is_new = False
        # A waiter stays set while its request is unanswered, even if the client's
        # connection went away: like Kafka, the coordinator cannot tell.
        self.join_waiter: asyncio.Future[JoinResult] | None = None
        self.sync_waiter: asyncio.Future[SyncResult] | None = None
        self.expiry: asyncio.TimerHandle | None = None

    @property
    def awaiting_join(self) -> bool:
        return self.join_waiter is not None

    def metadata(self, protocol: str | None) -> bytes:
        return next((md for name, md in self.protocols if name == protocol), b"")

    def matches(self, protocols: Protocols) -> bool:
        return self.protocols == list(protocols)

    def vote(self, candidates: set[str]) -> str:
        return next(name for name, _ in self.protocols if name in candidates)


class Group:
    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.state = EMPTY
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # group.instance.id -> member id
        self.pending_members: dict[str, asyncio.TimerHandle] = {}  # KIP-394 ids handed out
        self.pending_sync: set[str] = set()
        self.supported_protocols: Counter[str] = Counter()
        self.new_member_added = False
        self.in_initial_delay = False
        self.join_timer: asyncio.TimerHandle | None = None
        self.sync_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"Group({self.group_id!r}, {self.state.value}, generation {self.generation})"

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    def supports_protocols(self, protocol_type: str, protocols: Protocols) -> bool:
        if self.state is EMPTY:
            return bool(protocol_type) and bool(protocols)
        size = len(self.members)
        return self.protocol_type == protocol_type and any(
            self.supported_protocols[name] == size for name, _ in protocols
        )

    def select_protocol(self) -> str:
        """The protocol every member supports that most members prefer (Kafka's vote)."""
        size = len(self.members)
        candidates = {name for name, count in self.supported_protocols.items() if count == size}
        votes = Counter(m.vote(candidates) for m in self.members.values())
        return votes.most_common(1)[0][0]

    def add(self, member: Member, waiter: asyncio.Future[JoinResult]) -> None:
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self.supported_protocols.update(name for name, _ in member.protocols)
        member.join_waiter = waiter
        pending = self.pending_members.pop(member.member_id, None)
        if pending is not None:
            pending.cancel()

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is not None:
            self.supported_protocols.subtract(name for name, _ in member.protocols)
            if member.instance_id is not None:
                self.static_members.pop(member.instance_id, None)
            if member.expiry is not None:
                member.expiry.cancel()
                member.expiry = None
        if self.is_leader(member_id):
            self.leader_id = next(iter(self.members), None)
        pending = self.pending_members.pop(member_id, None)
        if pending is not None:
            pending.cancel()
        self.pending_sync.discard(member_id)
        return member

    def update_member(
        self, member: Member, request: JoinRequest, waiter: asyncio.Future[JoinResult]
    ) -> None:
        self.supported_protocols.subtract(name for name, _ in member.protocols)
        member.protocols = list(request.protocols)
        self.supported_protocols.update(name for name, _ in member.protocols)
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        member.session_timeout_ms = request.session_timeout_ms
        member.join_waiter = waiter

    def replace_static_member(self, instance_id: str, old_id: str, new_id: str) -> Member:
        member = self.members.pop(old_id)
        # Fence the old incarnation at once if it is still waiting for an answer.
        answer_join(member, JoinResult(GroupError.FENCED_INSTANCE, old_id))
        answer_sync(member, SyncResult(GroupError.FENCED_INSTANCE))
        member.member_id = new_id
        self.members[new_id] = member
        if self.is_leader(old_id):
            self.leader_id = new_id
        self.static_members[instance_id] = new_id
        return member

    def has_all_members_joined(self) -> bool:
        return not self.pending_members and all(m.awaiting_join for m in self.members.values())

    def elect_joined_leader(self) -> bool:
        """Keep a leader that has rejoined, else pick any member that has; False if none has."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].awaiting_join:
            return True
        joined = next((m.member_id for m in self.members.values() if m.awaiting_join), None)
        if joined is None:
            return False
        self.leader_id = joined
        return True

    def member_list(self) -> list[JoinedMember]:
        return [
            JoinedMember(m.member_id, m.instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        ]


def check_member(group: Group, member_id: str, instance_id: str | None) -> GroupError | None:
    """The member exists, and a group.instance.id given is mapped to it (else fenced)."""
    if instance_id is not None:
        current = group.static_members.get(instance_id)
        if current is None:
            return GroupError.UNKNOWN_MEMBER
        if current != member_id:
            return GroupError.FENCED_INSTANCE
    if member_id not in group.members:
        return GroupError.UNKNOWN_MEMBER
    return None


def answer_join(member: Member, result: JoinResult) -> None:
    waiter, member.join_waiter = member.join_waiter, None
    if waiter is not None and not waiter.done():
        waiter.set_result(result)


def answer_sync(member: Member, result: SyncResult) -> None:
    waiter, member.sync_waiter = member.sync_waiter, None
    if waiter is not None and not waiter.done():
        waiter.set_result(result)
