"""Every Kafka API module; importing this registers their handlers (see registry.py)."""

from portask.protocols.kafka import (  # noqa: F401
    admin,
    api_versions,
    configs,
    fetch,
    metadata,
    offsets,
    produce,
    producers,
    sasl,
)
