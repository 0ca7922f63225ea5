"""The Kafka APIs' side of the authorizer: who the connection is, and Kafka's refusals.

``kafka.authorizer`` off (the default) leaves ``server.authorizer`` None, and every check
below is that one comparison per request (not per record), so the produce and fetch
paths cost what they did. On, each API asks ``allowed`` for the operations Kafka's
``KafkaApis`` checks, and answers with the error code Kafka gives: TOPIC_, GROUP_,
CLUSTER_ and TRANSACTIONAL_ID_AUTHORIZATION_FAILED. The ACL model and its matching live
in ``portask/broker/kafka/acls.py``.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from portask.broker.kafka.acls import CLUSTER_NAME, Operation, ResourceType
from portask.protocols.kafka.context import RequestContext

__all__ = ["Operation", "ResourceType", "allowed", "cluster_allowed", "may_create_topic",
           "wire_enum"]

E = TypeVar("E", bound=enum.IntEnum)


def allowed(ctx: RequestContext, operation: Operation, resource_type: ResourceType,
            name: str) -> bool:
    authorizer = ctx.server.authorizer
    if authorizer is None:
        return True
    conn = ctx.connection
    return authorizer.authorize(conn.principal, conn.host, operation, resource_type, name)


def cluster_allowed(ctx: RequestContext, operation: Operation) -> bool:
    return allowed(ctx, operation, ResourceType.CLUSTER, CLUSTER_NAME)


def may_create_topic(ctx: RequestContext, name: str) -> bool:
    """CREATE on the cluster, or on the topic (Kafka checks both, cluster first)."""
    return cluster_allowed(ctx, Operation.CREATE) or allowed(
        ctx, Operation.CREATE, ResourceType.TOPIC, name)


def wire_enum(cls: type[E], value: int) -> E:
    """A wire code as the ACL enum, UNKNOWN (0) for a code Kafka does not define."""
    try:
        return cls(value)
    except ValueError:
        return cls(0)


# What a Kafka broker without an authorizer says to the ACL APIs.
SECURITY_DISABLED_MESSAGE = "No Authorizer is configured on the broker"
