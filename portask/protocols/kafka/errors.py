"""Kafka error codes: kio's generated enum, the one place the protocol layer takes them from.

Also the broker's refusals that several APIs answer, mapped to their wire codes here at
the protocol's edge (the broker core knows nothing of Kafka's numbers).
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from portask.broker.kafka.groups import GroupError

__all__ = ["GROUP_ERRORS", "ErrorCode"]

# The group coordinator's answers, for every group API and the offset APIs.
GROUP_ERRORS: dict[GroupError | None, ErrorCode] = {
    None: ErrorCode.none,
    GroupError.INVALID_GROUP_ID: ErrorCode.invalid_group_id,
    GroupError.COORDINATOR_NOT_AVAILABLE: ErrorCode.coordinator_not_available,
    GroupError.INVALID_SESSION_TIMEOUT: ErrorCode.invalid_session_timeout,
    GroupError.UNKNOWN_MEMBER: ErrorCode.unknown_member_id,
    GroupError.MEMBER_ID_REQUIRED: ErrorCode.member_id_required,
    GroupError.ILLEGAL_GENERATION: ErrorCode.illegal_generation,
    GroupError.REBALANCE_IN_PROGRESS: ErrorCode.rebalance_in_progress,
    GroupError.INCONSISTENT_PROTOCOL: ErrorCode.inconsistent_group_protocol,
    GroupError.FENCED_INSTANCE: ErrorCode.fenced_instance_id,
    GroupError.GROUP_NOT_FOUND: ErrorCode.group_id_not_found,
    GroupError.NON_EMPTY_GROUP: ErrorCode.non_empty_group,
    GroupError.SUBSCRIBED_TO_TOPIC: ErrorCode.group_subscribed_to_topic,
    GroupError.INVALID_REQUEST: ErrorCode.invalid_request,
    GroupError.FENCED_MEMBER_EPOCH: ErrorCode.fenced_member_epoch,
    GroupError.STALE_MEMBER_EPOCH: ErrorCode.stale_member_epoch,
    GroupError.UNRELEASED_INSTANCE_ID: ErrorCode.unreleased_instance_id,
    GroupError.UNSUPPORTED_ASSIGNOR: ErrorCode.unsupported_assignor,
    GroupError.INVALID_REGULAR_EXPRESSION: ErrorCode.invalid_regular_expression,
}
