"""Every Kafka API module; importing this registers their handlers (see registry.py)."""

from portask.protocols.kafka import (  # noqa: F401
    admin,
    api_versions,
    configs,
    fetch,
    groups,
    metadata,
    offsets,
    offsets_commit,
    produce,
    producers,
    sasl,
    txn,
)
