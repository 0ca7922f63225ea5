"""What many Kafka answers share: no throttling, no ACL answers, per-partition results.

The hot answers (Produce, Fetch) are hand-encoded and use none of this; the rest build
kio entities with ``registry.make``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import Any

from portask.protocols.kafka import registry

# This broker never throttles a client: every answer carries a throttle time of 0.
NO_THROTTLE = datetime.timedelta(0)
# Kafka's "authorized operations not requested" sentinel (INT32_MIN).
OPERATIONS_UNKNOWN = -2147483648


def per_partition(
    topics: Iterable[Any],
    topic_type: type,
    answer: Callable[[Any, Any], Any],
    *,
    topic_field: str = "name",
    partitions_field: str = "partitions",
) -> tuple[Any, ...]:
    """One answer per requested partition, grouped by topic in the request's order.

    ``answer(topic, partition)`` is called with the request's own topic and partition
    entries. The answer's topic field has the same name as the request's
    (``topic_field``: "name" for most APIs, "topic" for OffsetForLeaderEpoch).
    """
    return tuple(
        registry.make(
            topic_type,
            **{
                topic_field: getattr(t, topic_field),
                partitions_field: tuple(answer(t, p) for p in t.partitions),
            },
        )
        for t in topics
    )
