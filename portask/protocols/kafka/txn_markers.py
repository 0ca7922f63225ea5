"""Transactions in the log: the markers written when one ends, and spans rebuilt from them.

The broker core's TransactionCoordinator decides; this module is the part that needs
Kafka's record format. Ending a transaction writes a control batch (commit or abort
marker) into every partition it touched; after a restart a partition's open and aborted
spans are recovered by reading its batches, the first time a request needs them.
``attach`` is called once at start-up by the composition root (portask/app.py).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from portask.broker.definitions import TXN_PARTITIONS
from portask.broker.kafka.topics import Partition
from portask.broker.kafka.transactions import Transaction
from portask.protocols.kafka import records
from portask.storage import LogRecord

if TYPE_CHECKING:
    from portask.broker.core import Broker

logger = logging.getLogger("portask.kafka")


def attach(broker: Broker) -> None:
    """Give the coordinator its marker writer, abort what a crash left open, start expiry."""
    broker.transactions.load(lambda txn, key, commit: write_marker(broker, txn, key, commit))
    broker.transactions.start()


def write_marker(broker: Broker, txn: Transaction, key: tuple[str, int], commit: bool) -> None:
    partition = broker.topics.partition(*key)
    if partition is None:  # the topic was deleted meanwhile: nothing to mark
        return
    ensure_rebuilt(broker, partition)
    now = int(time.time() * 1000)
    marker = records.control_batch(txn.producer_id, txn.epoch, commit, now)
    records.stamp(marker, partition.high_watermark)
    offset = partition.append(marker, 1, now)
    partition.transactions.end(txn.producer_id, offset, commit)


def note_transactional_append(broker: Broker, partition: Partition, pid: int, offset: int) -> None:
    state = partition.transactions
    if not state.ongoing and not state.aborted:
        key = (partition.topic.name, partition.index)
        if not broker.definitions.get(TXN_PARTITIONS, key):
            broker.definitions.put(TXN_PARTITIONS, key, True)
    state.begin(pid, offset)


def ensure_rebuilt(broker: Broker, partition: Partition) -> None:
    """After a restart, recover open and aborted spans by reading the partition's batches."""
    state = partition.transactions
    if state.rebuilt:
        return
    state.rebuilt = True
    key = (partition.topic.name, partition.index)
    if not broker.definitions.get(TXN_PARTITIONS, key):
        return
    for entry in partition.scan(partition.log_start_offset):
        for info in records.parse_batches(entry.payload):
            if info.is_control:
                state.end(info.producer_id, entry.offset, _is_commit(partition, entry))
            elif info.is_transactional:
                state.begin(info.producer_id, entry.offset)


def _is_commit(partition: Partition, entry: LogRecord) -> bool:
    try:
        return records.control_type(entry.payload) == records.CONTROL_COMMIT
    except records.InvalidBatch as exc:
        # Only a client could have written such a marker (before Produce refused control
        # batches). Taking it as an abort keeps read_committed consumers from seeing data
        # that was never committed.
        logger.warning(
            "unreadable transaction marker taken as an abort",
            extra={"fields": {"topic": partition.topic.name, "partition": partition.index,
                              "offset": entry.offset, "detail": str(exc)}},
        )
        return False
