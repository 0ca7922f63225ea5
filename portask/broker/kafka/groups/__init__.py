"""Consumer groups: the model (``model``), the coordinator (``coordinator``) and the
committed offsets (``offsets``)."""

from portask.broker.kafka.groups.coordinator import Groups
from portask.broker.kafka.groups.model import (
    COMPLETING,
    DEAD,
    EMPTY,
    NO_GENERATION,
    PREPARING,
    STABLE,
    UNKNOWN_MEMBER_ID,
    Group,
    GroupError,
    GroupState,
    JoinedMember,
    JoinRequest,
    JoinResult,
    Member,
    OffsetEntry,
    SyncResult,
    TopicPartition,
)
from portask.broker.kafka.groups.offsets import CommittedOffsets

__all__ = [
    "COMPLETING", "DEAD", "EMPTY", "NO_GENERATION", "PREPARING", "STABLE",
    "UNKNOWN_MEMBER_ID", "CommittedOffsets", "Group", "GroupError", "GroupState", "Groups",
    "JoinRequest", "JoinResult", "JoinedMember", "Member", "OffsetEntry", "SyncResult",
    "TopicPartition",
]
