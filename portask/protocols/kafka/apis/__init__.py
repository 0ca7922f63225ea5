"""Every Kafka API module; importing this registers their handlers (see registry.py)."""

from portask.protocols.kafka.apis import (  # noqa: F401
    api_versions,
    classic_group,
    configs,
    fetch,
    init_producer_id,
    list_offsets,
    metadata,
    offset_commit,
    produce,
    sasl,
    topic_admin,
    transactions,
)
