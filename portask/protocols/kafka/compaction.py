"""Log compaction for ``cleanup.policy=compact`` topics: keep the latest record per key.

The broker core schedules it (Topics.compact_all; portask/app.py installs ``compactor``'s
hook as ``topics.compactor``); this module supplies what needs the record format: reading keys
out of stored batches and rewriting a batch with only the records to keep. Only closed
segments are rewritten; the active one is left alone, as in Kafka. A tombstone (null
value) is kept while younger than ``delete.retention.ms`` so that consumers catching up
still see the delete, then it goes too. Offsets never change: a batch whose records are
all gone stays as an empty batch.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from portask.broker.kafka.topics import Partition
from portask.broker.log.kafka_batch import is_control
from portask.protocols.kafka import records
from portask.storage import LogRecord

log = logging.getLogger("portask.kafka")


def compact(partition: Partition, now_ms: int, limit: int) -> int:
    """Compact one partition's closed segments; returns the bytes reclaimed.

    ``limit`` bounds how far a batch is decompressed. A batch whose records cannot be
    read is kept as it is and its keys are not counted, so it never causes a deletion:
    one warning per pass names how many there were.
    """
    plog = partition.log
    if plog.segment_count < 2:
        return 0
    delete_retention_ms = int(partition.topic.effective["delete.retention.ms"])
    latest: dict[bytes, int] = {}
    unreadable: set[int] = set()
    for entry in partition.scan(plog.start_offset):
        if not is_control(entry.payload):
            try:
                keys = records.record_keys(entry.payload, limit)
            except records.InvalidBatch:
                unreadable.add(entry.offset)
                keys = []
            for delta, key, _, _ in keys:
                if key is not None:
                    latest[key] = entry.offset + delta

    def transform(entry: LogRecord) -> bytearray | None:
        if entry.offset in unreadable or is_control(entry.payload):
            return None
        try:
            found = records.record_keys(entry.payload, limit)
        except records.InvalidBatch:
            unreadable.add(entry.offset)
            return None
        # A record goes only when a later one with its key was seen; a key the first
        # pass did not see (an entry it could not read) keeps its record.
        keep = {
            delta for delta, key, tombstone, ts in found
            if key is not None
            and latest.get(key, entry.offset + delta) == entry.offset + delta
            and not (tombstone and now_ms - ts > delete_retention_ms)
        }
        if len(keep) == len(found):
            return None
        return records.keep_records(entry.payload, keep, limit)

    reclaimed = plog.rewrite_closed(transform)
    fields = {"topic": partition.topic.name, "partition": partition.index}
    if unreadable:
        log.warning(
            "compaction kept batches whose records it cannot read",
            extra={"fields": {**fields, "batches": len(unreadable),
                              "first_offset": min(unreadable)}},
        )
    if reclaimed:
        log.info("compacted", extra={"fields": {**fields, "bytes_reclaimed": reclaimed}})
    return reclaimed


def compactor(limit: int) -> Callable[[Partition, int], int]:
    """The hook Topics.compact_all calls, with the broker's decompression limit."""
    return functools.partial(compact, limit=limit)
