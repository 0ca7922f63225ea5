"""A Kafka topic partition seen as a stream queue: same name, same offsets, same log.

The queue holds no log of its own. It reads the partition through a ``TopicPartition``
(committed records only, offsets as Kafka numbers them) and writes to it by handing each
publish to the same object, which turns the message into a Kafka record for the batch
the commit point writes (before any confirm of it). What a
record looks like as an AMQP message is the ``RecordMessages`` codec's decision, made at
the protocol edge and installed by the composition root: this module knows neither
Kafka's batch format nor AMQP's property encoding.

Consumers behave as on any stream queue (RabbitMQ's rules: a prefetch, no no-ack, no
basic.get, x-stream-offset first/last/next/offset/timestamp/interval); a consumer that
has read everything up to the partition's last stable offset waits on the log's
``watch`` and resumes on the next append, whichever protocol appended.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

from portask.broker.amqp.errors import AccessRefused
from portask.broker.amqp.message_store import Message, QueueStorage
from portask.broker.amqp.queue_args import STREAM, QueueArgs
from portask.broker.amqp.queues.base import Consumer
from portask.broker.amqp.queues.stream import StreamQueue
from portask.broker.log.errors import UnreadableRecords
from portask.broker.log.record_log import Record, RecordLog
from portask.storage.log import OffsetOutOfRange

_READ_AHEAD_BYTES = 256 * 1024
# The record view decompresses a batch within this many bytes; larger batches are
# refused at produce by kafka.max_uncompressed_batch_bytes, so this only bounds a
# hostile or damaged stored batch.
_DECOMPRESS_LIMIT = 64 << 20


class TopicPartition(Protocol):
    """One partition of a Kafka topic, as the AMQP side reads and writes it."""

    topic: str
    index: int

    @property
    def log(self) -> RecordLog: ...

    def read(self, offset: int, max_bytes: int, limit: int) -> tuple[list[Record], int]:
        """Committed data records from ``offset`` (control records and aborted
        transactions left out), and the offset to read from next. Raises
        OffsetOutOfRange below the log start."""

    def append(self, message: Message) -> RecordLog | None:
        """Take one AMQP message as a Kafka record, appended at the commit point;
        returns the partition it goes to (a multi-partition topic's partition-0 stream
        spreads by key), None if the topic refuses it (the publisher is nacked; a
        failed append at the commit point nacks through the publisher too)."""


class RecordMessages(Protocol):
    """A Kafka record as an AMQP message (the mapping table in the README)."""

    def message(self, record: Record, topic: str, partition: int | None = None) -> Message:
        """The message a record is; ``partition`` given, it also names its partition in
        a header (``x-kafka-partition``: what a feed's messages carry, so that they can
        be told apart after a restart)."""


class _Reader:
    __slots__ = ("consumer", "offset", "readahead")

    def __init__(self, consumer: Consumer, offset: int) -> None:
        self.consumer = consumer
        self.offset = offset
        self.readahead: deque[Record] = deque()


class TopicStreamQueue(StreamQueue):
    # Its log is the topic's: nothing of the queue storage's to open, keep or remove.
    on_disk = False
    # The RecordMessages codec writes x-stream-offset into the headers it builds, so
    # the channel need not splice it into finished property bytes.
    delivers_offsets = False
    yields_name = True

    def __init__(self, name: str, *, vhost: str, partition: TopicPartition,
                 messages: RecordMessages, storage: QueueStorage) -> None:
        arguments: dict[str, Any] = {"x-queue-type": "stream"}
        super().__init__(name, vhost=vhost, arguments=arguments,
                         args=QueueArgs(kind=STREAM), log=partition.log, storage=storage)
        self.partition = partition
        self._messages = messages
        self._topic_readers: list[_Reader] = []
        self._waiter: asyncio.Future[None] | None = None

    @property
    def consumers(self) -> list[Consumer]:
        return [reader.consumer for reader in self._topic_readers]

    def delete_refusal(self) -> AccessRefused:
        return AccessRefused(
            f"queue '{self.name}' in vhost '{self.vhost}' is partition "
            f"{self.partition.index} of Kafka topic '{self.partition.topic}'; delete the "
            "topic with a Kafka client")

    # -- publish: a Kafka record ------------------------------------------------------

    def publish(self, message: Message) -> bool:
        if self.deleted:
            return True
        self.published_total += 1
        written = self.partition.append(message)
        if written is None:
            return False
        # The partition's log joins the commit point: confirms follow its write (and
        # its fsync with storage.fsync: always).
        self._storage.appended(written.log)
        return True

    # -- consumers ---------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer, start: Any = None) -> None:
        self._topic_readers.append(_Reader(consumer, self._log.end_offset if start is None
                                           else start))
        self.had_consumers = True
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> bool:
        self._topic_readers = [r for r in self._topic_readers if r.consumer is not consumer]
        return False

    def dispatch(self) -> None:
        if self.deleted or not self._topic_readers:
            return
        waiting = False
        for reader in self._topic_readers:
            consumer = reader.consumer
            readahead = reader.readahead
            while consumer.ready():
                if not readahead and not self._fill(reader):
                    waiting = True
                    break
                record = readahead.popleft()
                reader.offset = record.offset + 1
                consumer.deliver(self, record.offset,
                                 self._messages.message(record, self.partition.topic), False)
                self.unacked += 1
        if waiting:
            self._watch()

    def peek(self, start: int = 0) -> Iterator[tuple[int, Message, bool]]:
        """The topic partition's records as AMQP messages, from offset ``start``."""
        reader = _Reader(None, max(start, self._log.start_offset))  # type: ignore[arg-type]
        while self._fill(reader):
            while reader.readahead:
                record = reader.readahead.popleft()
                yield (record.offset, self._messages.message(record, self.partition.topic),
                       False)

    def load(self, messages: list[tuple[Message, int]]) -> None:
        for message, _deadline in messages:
            self.publish(message)

    def _fill(self, reader: _Reader) -> bool:
        """Read ahead for one reader; False when it has read all that is committed."""
        while True:
            try:
                records, next_offset = self.partition.read(reader.offset, _READ_AHEAD_BYTES,
                                                           _DECOMPRESS_LIMIT)
            except OffsetOutOfRange:
                reader.offset = self._log.start_offset
                continue
            except UnreadableRecords:
                # A damaged stored batch: skip the entry, as a Kafka consumer would
                # have to, rather than stall every reader behind it.
                next_offset = self._skip_entry(reader.offset)
                records = []
            if records:
                reader.readahead.extend(records)
                reader.offset = next_offset
                return True
            if next_offset <= reader.offset:
                return False
            reader.offset = next_offset

    def _skip_entry(self, offset: int) -> int:
        entries = self._log.read(offset, 1)
        return entries[0].offset + entries[0].count if entries else offset

    def _watch(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(self._appended)
        self._waiter = waiter
        self._log.watch(waiter)

    def _appended(self, _waiter: asyncio.Future[None]) -> None:
        self._waiter = None
        self.dispatch()

    def readers(self) -> Iterator[int]:
        """Each consumer's next offset (for the management API and tests)."""
        return (reader.offset for reader in self._topic_readers)

    # -- lifetime ------------------------------------------------------------------------

    def delete(self) -> tuple[int, list[Consumer]]:
        self.deleted = True
        consumers = self.consumers
        self._topic_readers = []
        self._unwatch()
        return 0, consumers

    def close(self) -> None:
        self._unwatch()
        for reader in self._topic_readers:
            reader.readahead.clear()

    def _unwatch(self) -> None:
        if self._waiter is not None:
            self._log.unwatch(self._waiter)
            # Cancelling runs done callbacks too: this one must not dispatch.
            self._waiter.remove_done_callback(self._appended)
            self._waiter.cancel()
            self._waiter = None
