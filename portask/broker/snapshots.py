"""Named snapshots of what users created, for tests: take one after a suite's set-up,
restore it before each test (the control API's ``/_portask/snapshots``).

A snapshot holds, in the broker's memory: every vhost's exchanges, queues with their
ready messages (property bytes and bodies copied, in delivery order, with the TTL left),
bindings (to queues and exchanges), Kafka topics with their configs and stored batches
(bytes as stored), and committed consumer group offsets. Exclusive queues belong to
their connection and are not taken; neither are messages held unacked by consumers
(they are not in the queue), nor idempotent producer and transaction state.

Restoring resets the broker (as ``Control.reset``) and rebuilds exactly what was taken:
durable things durable again, transient ones transient; topics' records at the offsets
they had; a restored message is not flagged redelivered.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from portask.broker.control import ControlError
from portask.broker.definitions import CONSUMER_OFFSETS

if TYPE_CHECKING:
    from portask.broker.amqp.message_store import Message
    from portask.broker.amqp.vhosts import VirtualHosts
    from portask.broker.amqp.vhosts.vhost import VirtualHost
    from portask.broker.control import Control
    from portask.broker.definitions import Definitions
    from portask.broker.kafka.topics import Topic, Topics
    from portask.broker.user_store import UserStore

MAX_SNAPSHOTS = 100
# The owner a restore declares and binds as: never an exclusive queue's connection.
RESTORER = object()


@dataclass(slots=True)
class QueueState:
    name: str
    durable: bool
    auto_delete: bool
    arguments: dict[str, Any]
    # (message, ms of TTL left or 0). The messages are the snapshot's own copies, handed
    # to each restore's queue as they are: a message never changes once published
    # (``held`` and ``seq`` are the stores' bookkeeping, made for a message in several
    # queues at once), so a restore builds none (5,000 took ~5 ms).
    messages: list[tuple[Message, int]]
    stream: bool = False
    expiring: bool = False  # a message has a TTL: its deadline is set at each restore


@dataclass(slots=True)
class VhostState:
    name: str
    # (name, type, durable, auto_delete, internal, arguments)
    exchanges: list[tuple[str, str, bool, bool, bool, dict[str, Any]]]
    queues: list[QueueState]
    # (source, "q" or "e", destination, routing key, arguments)
    bindings: list[tuple[str, str, str, str, dict[str, Any]]]


@dataclass(slots=True)
class TopicState:
    name: str
    configs: dict[str, str]
    # Per partition: (log start offset, [(offset, payload, offset count, timestamp)]).
    partitions: list[tuple[int, list[tuple[int, bytes, int, int]]]]
    # The topic the snapshot holds as it is in the broker (taken, or last restored), and
    # each partition's end offset then: a topic still at those is left as it is.
    topic_id: uuid.UUID | None = None
    ends: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Snapshot:
    name: str
    vhosts: list[VhostState] = field(default_factory=list)
    topics: list[TopicState] = field(default_factory=list)
    offsets: list[tuple[Any, Any]] = field(default_factory=list)
    taken_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "taken_ms": self.taken_ms,
                "topics": len(self.topics),
                "records": sum(count for t in self.topics for _, entries in t.partitions
                               for _, _, count, _ in entries),
                "queues": sum(len(v.queues) for v in self.vhosts),
                "messages": sum(len(q.messages) for v in self.vhosts for q in v.queues),
                "exchanges": sum(len(v.exchanges) for v in self.vhosts),
                "bindings": sum(len(v.bindings) for v in self.vhosts),
                "offsets": len(self.offsets)}


class BrokerState(Protocol):
    """What of the broker core a snapshot reads and a restore rebuilds (``core.Broker``)."""

    topics: Topics
    amqp: VirtualHosts | None
    definitions: Definitions
    control: Control
    users: UserStore | None


class Snapshots:
    """The snapshots taken, by name (a name taken again is replaced)."""

    def __init__(self, broker: BrokerState) -> None:
        self.broker = broker
        self._taken: dict[str, Snapshot] = {}

    def __iter__(self) -> Any:
        return iter(list(self._taken.values()))

    def get(self, name: str) -> Snapshot | None:
        return self._taken.get(name)

    def delete(self, name: str) -> bool:
        return self._taken.pop(name, None) is not None

    def take(self, name: str) -> tuple[Snapshot, float]:
        """(the snapshot, ms it took)."""
        if not name:
            raise ControlError("a snapshot needs a name")
        if name not in self._taken and len(self._taken) >= MAX_SNAPSHOTS:
            raise ControlError(f"at most {MAX_SNAPSHOTS} snapshots; delete one first")
        started = time.perf_counter()
        broker = self.broker
        amqp = broker.amqp
        if amqp is not None:
            amqp.commit()  # pending appends readable from the logs
        snapshot = Snapshot(name)
        for topic in broker.topics:
            partitions = []
            for partition in topic.partitions:
                entries = [(r.offset, bytes(r.payload), r.count, r.timestamp)
                           for r in partition.scan(partition.log_start_offset)]
                partitions.append((partition.log_start_offset, entries))
            snapshot.topics.append(TopicState(
                topic.name, dict(topic.configs), partitions, topic.topic_id,
                [p.high_watermark for p in topic.partitions]))
        snapshot.offsets = list(broker.definitions.items(CONSUMER_OFFSETS))
        if amqp is not None:
            now = int(time.time() * 1000)
            snapshot.vhosts = [_take_vhost(vhost, now) for vhost in amqp]
        self._taken[name] = snapshot
        return snapshot, (time.perf_counter() - started) * 1000

    def restore(self, name: str) -> tuple[Snapshot, float]:
        """Reset, then rebuild what the snapshot holds: (the snapshot, ms it took)."""
        snapshot = self._taken.get(name)
        if snapshot is None:
            raise KeyError(name)
        started = time.perf_counter()
        broker = self.broker
        # A topic nobody wrote to, trimmed or altered since is what the snapshot holds:
        # it stays (a new log per topic is most of what rebuilding topics costs).
        unchanged = {state.name for state in snapshot.topics
                     if _unchanged(broker.topics.get(state.name), state)}
        # Likewise a durable queue declared as the snapshot has it, idle: it is purged
        # and refilled, not deleted and made again (a new log each).
        refill = _refillable(broker, snapshot)
        broker.control.reset(keep_topics=unchanged, keep_queues=refill)
        with broker.definitions.batch():
            for state in snapshot.topics:
                if state.name not in unchanged:
                    state.topic_id = _restore_topic(broker, state).topic_id
            for key, value in snapshot.offsets:
                broker.definitions.put(CONSUMER_OFFSETS, key, value)
            amqp = broker.amqp
            if amqp is not None:
                now = int(time.time() * 1000)
                for vhost_state in snapshot.vhosts:
                    vhost = amqp.get(vhost_state.name)
                    if vhost is None:
                        vhost = amqp.create(vhost_state.name)
                    _restore_vhost(vhost, vhost_state, now)
                amqp.commit()
        return snapshot, (time.perf_counter() - started) * 1000


def _take_vhost(vhost: VirtualHost, now: int) -> VhostState:
    exchanges = [(e.name, e.kind, e.durable, e.auto_delete, e.internal, dict(e.arguments))
                 for e in vhost.exchanges.values()
                 if e.name and not e.name.startswith("amq.")]
    queues: list[QueueState] = []
    for queue in vhost.queues.values():
        if queue.exclusive or queue.yields_name:
            continue  # a connection's own queue; a Kafka topic's partition
        state = QueueState(queue.name, queue.durable, queue.auto_delete,
                           dict(queue.arguments), [], stream=queue.is_stream)
        if queue.is_stream:
            state.messages = [_copied(m, 0, now) for _, m, _ in queue.peek()]
        else:
            store = queue.store  # type: ignore[union-attr]
            state.messages = [_copied(m, deadline, now) for m, _r, deadline in store.peek()
                              if not deadline or deadline > now]
        state.expiring = any(ttl for _, ttl in state.messages)
        queues.append(state)
    bindings = []
    for exchange in vhost.exchanges.values():
        if not exchange.name:
            continue  # the default exchange's implicit bindings
        for binding in exchange.bindings.values():
            dest = binding.destination
            kind = "q" if vhost.queues.get(dest.name) is dest else "e"
            if kind == "q" and dest.exclusive:  # type: ignore[union-attr]
                continue
            bindings.append((exchange.name, kind, dest.name, binding.routing_key,
                             dict(binding.arguments)))
    return VhostState(vhost.name, exchanges, queues, bindings)


def _copied(message: Message, deadline: int, now: int) -> tuple[Message, int]:
    from portask.broker.amqp.message_store import Message

    # Copies: a durable queue's message is a view of a segment that may go away.
    return (Message(message.exchange, message.routing_key, bytes(message.properties),
                    bytes(message.body), persistent=message.persistent,
                    priority=message.priority),
            deadline - now if deadline else 0)


def _unchanged(topic: Topic | None, state: TopicState) -> bool:
    """Whether ``topic`` is the one the snapshot holds, with the same records: the same
    topic (id), configs and partitions, each from the same start to the same end, and
    no transaction open in it. A Kafka log only changes by moving its ends, except by
    compaction, so a compacted topic is always rebuilt."""
    if (topic is None or topic.topic_id != state.topic_id or topic.configs != state.configs
            or len(topic.partitions) != len(state.partitions)
            or "compact" in topic.effective.get("cleanup.policy", "")):
        return False
    return all(p.log_start_offset == start and p.high_watermark == end
               and not p.transactions.ongoing
               for p, (start, _), end in zip(topic.partitions, state.partitions, state.ends,
                                             strict=True))


def _restore_topic(broker: BrokerState, state: TopicState) -> Topic:
    topic = broker.topics.create(state.name, len(state.partitions), state.configs)
    for partition, (start, entries) in zip(topic.partitions, state.partitions, strict=True):
        first = entries[0][0] if entries else start
        if first:
            # Offsets below the first stored batch were gone when the snapshot was taken:
            # one entry without records keeps every batch at the offset it was stored at,
            # and the log start goes back to where it was.
            partition.append(b"", first)
        for _offset, payload, count, timestamp in entries:
            partition.append(payload, count, timestamp)
        if start:
            partition.log.delete_before(start)
    return topic


def _refillable(broker: BrokerState, snapshot: Snapshot) -> set[tuple[str, str]]:
    """(vhost, queue) of the durable classic queues that still match the snapshot's
    declaration and that no consumer holds anything of."""
    amqp = broker.amqp
    found: set[tuple[str, str]] = set()
    if amqp is None:
        return found
    for vhost_state in snapshot.vhosts:
        vhost = amqp.get(vhost_state.name)
        if vhost is None:
            continue
        for q in vhost_state.queues:
            queue = vhost.queues.get(q.name)
            if (queue is not None and q.durable and queue.durable
                    and queue.auto_delete == q.auto_delete and queue.arguments == q.arguments
                    and q.arguments.get("x-queue-type") != "stream"
                    and not queue.yields_name and not queue.exclusive
                    and not queue.consumers and not queue.unacked):
                found.add((vhost_state.name, q.name))
    return found


def _restore_vhost(vhost: VirtualHost, state: VhostState, now: int) -> None:
    for name, kind, durable, auto_delete, internal, arguments in state.exchanges:
        vhost.declare_exchange(name, kind, durable=durable, auto_delete=auto_delete,
                               internal=internal, arguments=arguments)
    for q in state.queues:
        queue = vhost.declare_queue(q.name, owner=RESTORER, durable=q.durable,
                                    auto_delete=q.auto_delete, arguments=q.arguments)
        queue.load([(message, now + ttl) if ttl else (message, 0)
                    for message, ttl in q.messages] if q.expiring else q.messages)
    for source, kind, destination, routing_key, arguments in state.bindings:
        if kind == "q":
            if destination in vhost.queues:
                vhost.bind_queue(destination, source, routing_key, arguments, RESTORER)
        elif destination in vhost.exchanges:
            vhost.bind_exchange(destination, source, routing_key, arguments)
