"""x-queue-type stream: a record log (``broker.log.RecordLog``, the one a Kafka partition
is too) of AMQP messages, read with basic.consume from x-stream-offset.

Every consumer has its own position; nothing is removed by consuming. Acks only
return prefetch credit (RabbitMQ requires a prefetch for stream consumers, and
refuses no-ack consumers and basic.get). Retention is the log's own: x-max-age and
x-max-length-bytes become the log's retention_ms / retention_bytes, applied by the
log directory's periodic retention pass, whole segments at a time.
"""

from __future__ import annotations

import datetime
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from portask.broker.amqp.errors import NotImplementedFeature, PreconditionFailed
from portask.broker.amqp.message_store import Message, QueueStorage, decode_record, encode_record
from portask.broker.amqp.queue_args import QueueArgs, parse_max_age
from portask.broker.amqp.queues.base import AmqpQueue, Consumer
from portask.broker.log.record_log import RecordLog
from portask.storage.log import LogRecord, OffsetOutOfRange, StorageError

_READ_AHEAD_BYTES = 64 * 1024


class _Reader:
    __slots__ = ("consumer", "offset", "readahead")

    def __init__(self, consumer: Consumer, offset: int) -> None:
        self.consumer = consumer
        self.offset = offset
        self.readahead: deque[LogRecord] = deque()


class StreamQueue(AmqpQueue):
    is_stream = True
    delivers_offsets = True
    on_disk = True

    def __init__(self, name: str, *, vhost: str, arguments: dict[str, Any], args: QueueArgs,
                 log: RecordLog, storage: QueueStorage) -> None:
        # Streams have no get and refuse no-ack consumers: those totals stay 0.
        super().__init__(name, vhost=vhost, durable=True, exclusive_owner=None,
                         auto_delete=False, arguments=arguments, args=args)
        self._log = log
        self._storage = storage
        self._readers: list[_Reader] = []

    @property
    def log(self) -> RecordLog:
        """The stream itself, for readers outside AMQP (the HTTP API)."""
        return self._log

    @property
    def consumers(self) -> list[Consumer]:
        return [reader.consumer for reader in self._readers]

    @property
    def message_count(self) -> int:
        return self._log.end_offset - self._log.start_offset

    # -- publish -------------------------------------------------------------------------

    def publish(self, message: Message) -> bool:
        if self.deleted:
            return True
        self.published_total += 1
        try:
            self._log.append(encode_record(message, 0, True))
        except (OSError, StorageError, ValueError):
            return False
        self._storage.appended(self._log.log)
        self.dispatch()
        return True

    # -- consumers -----------------------------------------------------------------------

    def consumer_start(self, arguments: dict[str, Any], no_ack: bool, prefetch: int) -> int:
        """RabbitMQ's conditions for a stream consumer, and where it starts reading."""
        if no_ack:
            raise NotImplementedFeature(
                f"automatic acknowledgement not supported by stream queues {self.where()}")
        if not prefetch:
            raise PreconditionFailed(f"consumer prefetch count is not set for "
                                     f"'{self.where()}'")
        return self.start_offset(arguments.get("x-stream-offset"))

    def get(self, no_ack: bool) -> tuple[Any, Message, bool] | None:
        raise NotImplementedFeature(f"basic.get not supported by stream queues "
                                    f"{self.where()}")

    def start_offset(self, spec: object) -> int:
        """Where a consumer starts, from its x-stream-offset argument (default: next)."""
        log = self._log
        start, end = log.start_offset, log.end_offset
        if spec is None or spec == "next":
            return end
        if spec == "first":
            return start
        if spec == "last":
            # RabbitMQ starts at the last chunk; a chunk here is one message.
            return max(start, end - 1)
        if isinstance(spec, bool):
            raise self._bad_offset(spec)
        if isinstance(spec, int):
            return min(max(spec, start), end)
        if isinstance(spec, datetime.datetime):
            return self._at_time(int(spec.timestamp() * 1000))
        if isinstance(spec, str):
            try:
                age = parse_max_age(spec)
            except Exception:
                raise self._bad_offset(spec) from None
            return self._at_time(int(time.time() * 1000) - age)
        raise self._bad_offset(spec)

    def _at_time(self, timestamp_ms: int) -> int:
        found = self._log.offset_for_timestamp(timestamp_ms)
        return self._log.end_offset if found is None else found

    def _bad_offset(self, spec: object) -> PreconditionFailed:
        return PreconditionFailed(f"invalid x-stream-offset {spec!r} for queue '{self.name}' "
                                  f"in vhost '{self.vhost}'; expected first, last, next, an "
                                  "offset, a timestamp or an interval such as 1h")

    def add_consumer(self, consumer: Consumer, start: Any = None) -> None:
        self._readers.append(_Reader(consumer, self._log.end_offset if start is None
                                     else start))
        self.had_consumers = True
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> bool:
        self._readers = [r for r in self._readers if r.consumer is not consumer]
        return False

    def dispatch(self) -> None:
        if self.deleted or not self._readers:
            return
        # The storage log itself: this runs at every publish, and RecordLog's offsets
        # are one more property call each.
        log = self._log.log
        end = log.end_offset
        for reader in self._readers:
            consumer = reader.consumer
            readahead = reader.readahead
            while reader.offset < end and consumer.ready():
                if not readahead:
                    offset = max(reader.offset, log.start_offset)
                    try:
                        readahead.extend(log.read(offset, _READ_AHEAD_BYTES))
                    except OffsetOutOfRange:
                        reader.offset = log.start_offset
                        continue
                    if not readahead:
                        break
                record = readahead.popleft()
                if record.offset < reader.offset:
                    continue
                reader.offset = record.offset + 1
                message, _deadline = decode_record(record.payload)
                consumer.deliver(self, record.offset, message, False)
                if not consumer.no_ack:
                    self.unacked += 1

    def peek(self, start: int = 0) -> Iterator[tuple[int, Message, bool]]:
        log = self._log.log
        for record in log.entries(max(start, log.start_offset), log.end_offset,
                                  _READ_AHEAD_BYTES):
            if record.payload:
                yield record.offset, decode_record(record.payload)[0], False

    def load(self, messages: list[tuple[Message, int]]) -> None:
        log = self._log
        for message, _deadline in messages:
            log.append(encode_record(message, 0, True))
        if messages:
            self._storage.appended(log.log)
        self.dispatch()

    # -- settlement: acks only return credit -------------------------------------------------

    def ack(self, refs: list[Any]) -> None:
        self.unacked -= len(refs)
        self.acked_total += len(refs)

    def reject(self, refs: list[Any]) -> None:
        self.unacked -= len(refs)

    def requeue(self, refs: list[Any]) -> None:
        self.unacked -= len(refs)
        self.dispatch()

    def ack_quietly(self, refs: list[Any]) -> None:
        """Nothing to settle in a stream."""

    def touch(self) -> None:
        """Streams do not expire."""

    def purge(self) -> int:
        raise NotImplementedFeature(f"queue.purge not supported by stream queues "
                                    f"{self.where()}")

    def delete(self) -> tuple[int, list[Consumer]]:
        self.deleted = True
        consumers = self.consumers
        count = self.message_count
        self._readers = []
        return count, consumers

    def close(self) -> None:
        for reader in self._readers:
            reader.readahead.clear()
