"""What tests may do to a running broker through the control API (``/_portask/``):
reset everything users created, force an alarm, close every connection, and the
fault rules the protocol servers consult.

Protocol-neutral: the rules are plain data; ``protocols/kafka/faults.py`` turns a
matching rule into a Kafka answer. The protocol servers register how they close their
connections here, so readers (``http.control``) never reach into protocol objects.

The request paths pay one attribute read for all of this while no rule is installed:
``Faults.kafka`` is False until a Kafka rule exists.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from portask.broker.alarms import DISK, MEMORY
from portask.storage import files

if TYPE_CHECKING:
    from portask.broker.alarms import Alarms
    from portask.broker.amqp.vhosts import VirtualHosts
    from portask.broker.definitions import Definitions
    from portask.broker.kafka.groups import Groups
    from portask.broker.kafka.topics import Topics

log = logging.getLogger("portask.control")

PROTOCOLS = ("kafka", "amqp")
ACTIONS = ("error", "delay", "drop", "close", "throttle")
AMQP_ACTIONS = ("error", "close", "nack", "delay", "drop")
ALARMS = (MEMORY, DISK)
# The longest throttle a rule may ask for: Kafka's quotas stop well below it.
MAX_THROTTLE_MS = 300_000
# AMQP 0-9-1's soft errors (a channel close; the rest close the connection).
SOFT_ERRORS = (311, 312, 313, 403, 404, 405, 406)
# The longest a listener may refuse connections on one request (a test's "broker down").
MAX_REFUSE_MS = 600_000
MAX_FAILING_SYNCS = 1_000_000
DEFAULT_REQUEST_LOG = 1000
MAX_REQUEST_LOG = 100_000


class ControlError(ValueError):
    """A control request that cannot be carried out as asked; the text says why."""


@dataclass(slots=True)
class FaultRule:
    """One fault: which requests it matches and what happens to them.

    ``times`` counts how many more requests it applies to (None: no limit);
    ``probability`` makes each match apply with that chance; ``expires`` (monotonic
    seconds) ends it after a duration. A rule that has used up its ``times`` or its
    duration is removed. ``client`` matches the Kafka client id or the AMQP
    connection's ``connection_name``; ``user`` the authenticated user.
    """

    id: int
    protocol: str
    action: str
    api: str | None = None  # Kafka API name as in the protocol docs: "Produce", "Fetch"
    min_version: int | None = None  # the API versions it applies to, both ends included
    max_version: int | None = None
    topic: str | None = None
    partition: int | None = None  # with topic: requests that name this partition of it
    error: str | None = None  # Kafka error name: "NOT_LEADER_OR_FOLLOWER"
    method: str | None = None  # AMQP method: "basic.publish", "queue.declare"
    queue: str | None = None
    exchange: str | None = None
    routing_key: str | None = None
    code: int | None = None  # AMQP reply code of the channel or connection close
    text: str | None = None
    delay_ms: int = 0
    throttle_ms: int = 0
    times: int | None = None
    probability: float | None = None
    client: str | None = None
    user: str | None = None
    duration_ms: int | None = None
    expires: float | None = None
    applied: int = 0
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def matches(self, api: str, version: int, topics: tuple[str, ...]) -> bool:
        if self.api is not None and self.api != api:
            return False
        if self.min_version is not None and version < self.min_version:
            return False
        if self.max_version is not None and version > self.max_version:
            return False
        return self.topic is None or self.topic in topics

    def describe(self) -> dict[str, Any]:
        described = {"id": self.id, "protocol": self.protocol, "action": self.action,
                     "api": self.api, "min_version": self.min_version,
                     "max_version": self.max_version, "topic": self.topic,
                     "partition": self.partition,
                     "error": self.error, "delay_ms": self.delay_ms or None,
                     "throttle_ms": self.throttle_ms or None, "method": self.method,
                     "queue": self.queue, "exchange": self.exchange,
                     "routing_key": self.routing_key, "code": self.code, "text": self.text,
                     "times": self.times, "probability": self.probability,
                     "client": self.client, "user": self.user,
                     "duration_ms": self.duration_ms, "applied": self.applied}
        return {k: v for k, v in described.items() if v is not None or k == "times"}


class Faults:
    """The installed fault rules, in the order they were added (the first match wins)."""

    def __init__(self, changed: Callable[[], None] | None = None) -> None:
        self.rules: list[FaultRule] = []
        # True only while a Kafka (an AMQP) rule is installed.
        self.kafka = False
        self.amqp = False
        self.amqp_nack = False  # a rule nacks publishes (asked once a publish is routed)
        # Read on every AMQP method frame: set while an AMQP rule is installed or the
        # request log is on (Control keeps it so).
        self.amqp_hooked = False
        # The methods AMQP rules name (the others skip the check without a decode),
        # and the rules by (method, exchange, is a nack rule).
        self.amqp_methods: frozenset[str | None] = frozenset()
        self._amqp_index: dict[tuple[str | None, str | None, bool], list[FaultRule]] = {}
        self._kafka_index: dict[tuple[str | None, str | None], list[FaultRule]] = {}
        self.nack_by_queue = False  # a nack rule names a queue: a publish is routed first
        # The exchanges (UTF-8, as a publish frame names them) that publish rules name:
        # a publish to another one is not decoded; None: a rule matches any exchange.
        self.publish_exchanges: frozenset[bytes] | None = frozenset()
        # The API names each protocol server serves (set when it starts), to refuse a
        # rule that could never match.
        self.apis: dict[str, frozenset[str]] = {}
        self._changed = changed
        self._ids = itertools.count(1)
        self._random = random.Random()

    def add(self, *, protocol: str, action: str, api: str | None = None,
            topic: str | None = None, error: str | None = None, delay_ms: int = 0,
            times: int | None = None, probability: float | None = None,
            method: str | None = None, queue: str | None = None,
            exchange: str | None = None, code: int | None = None,
            text: str | None = None, min_version: int | None = None,
            max_version: int | None = None, throttle_ms: int = 0,
            routing_key: str | None = None, client: str | None = None,
            user: str | None = None, duration_ms: int | None = None,
            partition: int | None = None) -> FaultRule:
        if protocol not in PROTOCOLS:
            raise ControlError(f"protocol must be one of {', '.join(PROTOCOLS)}")
        if duration_ms is not None and duration_ms < 1:
            raise ControlError("duration_ms must be at least 1")
        who = {"client": client, "user": user, "duration_ms": duration_ms}
        if protocol == "amqp":
            return self._add(FaultRule(0, protocol, action, method=method, queue=queue,
                                       exchange=exchange, routing_key=routing_key, code=code,
                                       text=text, delay_ms=delay_ms, times=times,
                                       probability=probability, **who))
        if action not in ACTIONS:
            raise ControlError(f"action must be one of {', '.join(ACTIONS)}")
        known = self.apis.get(protocol)
        if api is not None and known is not None and api not in known:
            raise ControlError(f"unknown {protocol} API {api!r}; served: "
                               + ", ".join(sorted(known)))
        if action == "error" and not error:
            raise ControlError("an error rule needs error (a Kafka error name)")
        if action == "delay" and delay_ms <= 0:
            raise ControlError("a delay rule needs delay_ms > 0")
        if action == "throttle" and not 0 < throttle_ms <= MAX_THROTTLE_MS:
            raise ControlError(f"a throttle rule needs throttle_ms in 1..{MAX_THROTTLE_MS}")
        if (min_version is not None and max_version is not None
                and min_version > max_version):
            raise ControlError("min_version is above max_version")
        if partition is not None and (topic is None or partition < 0):
            raise ControlError("a partition rule needs its topic and a partition >= 0")
        return self._add(FaultRule(0, protocol, action, api=api, min_version=min_version,
                                   max_version=max_version, topic=topic, error=error,
                                   partition=partition,
                                   delay_ms=delay_ms, throttle_ms=throttle_ms, times=times,
                                   probability=probability, **who))

    def _add(self, rule: FaultRule) -> FaultRule:
        if rule.times is not None and rule.times < 1:
            raise ControlError("times must be at least 1")
        if rule.probability is not None and not 0 < rule.probability <= 1:
            raise ControlError("probability must be in (0, 1]")
        if rule.protocol == "amqp":
            _check_amqp(rule)
        if rule.duration_ms is not None:
            rule.expires = time.monotonic() + rule.duration_ms / 1000
        rule.id = next(self._ids)
        self.rules.append(rule)
        self._refresh()
        log.info("fault rule added", extra={"fields": rule.describe()})
        return rule

    def active(self) -> list[FaultRule]:
        """The rules in force: those whose duration ran out without a request to end
        them are removed first."""
        now = time.monotonic()
        expired = [r for r in self.rules if r.expires is not None and now >= r.expires]
        if expired:
            for rule in expired:
                self.rules.remove(rule)
            self._refresh()
        return self.rules

    def clear(self) -> int:
        count = len(self.rules)
        self.rules.clear()
        self._refresh()
        return count

    def take(self, protocol: str, api: str, version: int, topics: tuple[str, ...],
             client: str | None = None, user: str | None = None,
             partitions: Callable[[], Collection[tuple[str, int]]] | None = None,
             ) -> FaultRule | None:
        """The Kafka rule that applies to this request, counted as applied; None if none
        does. Rules are indexed by API and topic: those for other APIs or topics cost a
        few dict lookups per request, not a test each."""
        index = self._kafka_index
        found: list[FaultRule] = []
        for key in ((api, None), (None, None), *((api, t) for t in topics),
                    *((None, t) for t in topics)):
            rules = index.get(key)
            if rules:
                found.extend(rules)
        if len(found) > 1:
            found = sorted({r.id: r for r in found}.values(), key=lambda r: r.id)
        named: Collection[tuple[str, int]] | None = None
        for rule in found:
            if not rule.matches(api, version, topics):
                continue
            if rule.partition is not None:  # the request's partitions, read once if asked
                if named is None:
                    named = partitions() if partitions is not None else ()
                if (rule.topic, rule.partition) not in named:
                    continue
            if not self._applies(rule, client, user):
                continue
            self._applied(rule)
            return rule
        return None

    def take_amqp(self, method: str, queue: str | None, exchange: str | None,
                  routing_key: str | None = None, *, nack: bool = False,
                  client: str | None = None, user: str | None = None) -> FaultRule | None:
        """The AMQP rule that applies to this method, counted as applied. ``nack``
        rules are asked for apart (``nack=True``), once a publish has been routed.
        Rules are indexed by method and exchange: those for other exchanges cost
        nothing here, which matters on the per-message publish path."""
        named = self._amqp_index.get((method, exchange, nack), ())
        anywhere = (self._amqp_index.get((method, None, nack), ())
                    if exchange is not None else ())
        candidates = (sorted((*named, *anywhere), key=lambda r: r.id)
                      if named and anywhere else named or anywhere)
        for rule in candidates:
            if ((rule.queue is not None and rule.queue != queue)
                    or (rule.routing_key is not None and rule.routing_key != routing_key)
                    or not self._applies(rule, client, user)):
                continue
            self._applied(rule)
            return rule
        return None

    def _applies(self, rule: FaultRule, client: str | None, user: str | None) -> bool:
        """The checks every protocol shares, after its own: who asks, the rule's
        duration (an expired rule goes), and its probability."""
        if ((rule.client is not None and rule.client != client)
                or (rule.user is not None and rule.user != user)):
            return False
        if rule.expires is not None and time.monotonic() >= rule.expires:
            self.rules.remove(rule)
            self._refresh()
            return False
        return rule.probability is None or self._random.random() < rule.probability

    def _applied(self, rule: FaultRule) -> None:
        rule.applied += 1
        if rule.times is not None:
            rule.times -= 1
            if rule.times == 0:
                self.rules.remove(rule)
                self._refresh()

    def _refresh(self) -> None:
        self.kafka = any(r.protocol == "kafka" for r in self.rules)
        self.amqp = any(r.protocol == "amqp" and r.action != "nack" for r in self.rules)
        self.amqp_nack = any(r.action == "nack" for r in self.rules)
        self.amqp_hooked = self.amqp
        by_api: dict[tuple[str | None, str | None], list[FaultRule]] = {}
        for rule in self.rules:
            if rule.protocol == "kafka":
                by_api.setdefault((rule.api, rule.topic), []).append(rule)
        self._kafka_index = by_api
        index: dict[tuple[str | None, str | None, bool], list[FaultRule]] = {}
        for rule in self.rules:
            if rule.protocol == "amqp":
                index.setdefault((rule.method, rule.exchange, rule.action == "nack"),
                                 []).append(rule)
        self._amqp_index = index
        self.amqp_methods = frozenset(r.method for r in self.rules
                                      if r.protocol == "amqp" and r.action != "nack")
        self.nack_by_queue = any(r.action == "nack" and r.queue is not None
                                 for r in self.rules)
        publish = [r for r in self.rules if r.protocol == "amqp" and r.action != "nack"
                   and r.method == "basic.publish"]
        self.publish_exchanges = (None if any(r.exchange is None for r in publish)
                                  else frozenset(str(r.exchange).encode() for r in publish))
        if self._changed is not None:
            self._changed()


def _check_amqp(rule: FaultRule) -> None:
    """An AMQP rule closes the channel (``error``: a soft error code) or the
    connection (``close``: 320 or a hard error, 5xx), as RabbitMQ does for real ones;
    or holds what the connection writes from the matching method on, ``delay_ms``
    (``delay``) or for good (``drop``)."""
    if not rule.method or "." not in rule.method:
        raise ControlError("an AMQP rule needs method, e.g. basic.publish")
    rule.method = rule.method.lower()
    if rule.action == "nack":
        if rule.method != "basic.publish":
            raise ControlError("a nack rule applies to method basic.publish")
        return
    if rule.routing_key is not None:
        raise ControlError("routing_key applies to nack rules")
    if rule.action in ("delay", "drop"):
        if rule.code is not None or rule.text is not None:
            raise ControlError(f"a {rule.action} rule takes no code or text")
        if rule.action == "delay" and rule.delay_ms <= 0:
            raise ControlError("a delay rule needs delay_ms > 0")
        if rule.action == "drop" and rule.delay_ms:
            raise ControlError("a drop rule takes no delay_ms")
        return
    if rule.action == "error":
        rule.code = rule.code if rule.code is not None else 406
        if rule.code not in SOFT_ERRORS:
            raise ControlError("a channel error code is one of AMQP's soft errors: "
                               + ", ".join(map(str, SOFT_ERRORS)))
    elif rule.action == "close":
        rule.code = rule.code if rule.code is not None else 320
        if rule.code != 320 and not 500 <= rule.code < 600:
            raise ControlError("a connection close code is 320 or 5xx")
    else:
        raise ControlError("AMQP rules take action error (channel close), close "
                           "(connection close), nack (a confirmed publish nacked), delay "
                           "or drop (the answer)")
    rule.text = rule.text or "fault injected by the control API"


@dataclass(slots=True)
class RequestEntry:
    """One request as the request log keeps it. Kafka: ``api`` is the API name
    ("Produce"), ``version`` its version, ``client_id`` the client's id. AMQP: ``api`` is
    the method ("basic.publish"), ``version`` None, ``client_id`` the connection name the
    client gave, ``channel`` its channel; ``details`` holds what tests assert on (acks of
    a Produce, offsets of an OffsetCommit, exchange / routing key / queue of a method).
    ``errors``: the error names (Kafka) of the answer; ``reply_code``: AMQP's 200, or
    the code of the close the method caused."""

    protocol: str
    api: str
    version: int | None
    client_id: str | None
    connection: str
    topics: tuple[str, ...]
    size: int
    details: dict[str, Any]
    fault: str | None = None
    error: str | None = None
    duration_ms: float | None = None
    response_size: int | None = None
    errors: list[str] = field(default_factory=list)
    partitions: list[tuple[str, int]] = field(default_factory=list)
    channel: int | None = None
    reply_code: int | None = None
    at_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "protocol": self.protocol, "api": self.api, "version": self.version,
            "client_id": self.client_id, "connection": self.connection,
            "size": self.size, "response_size": self.response_size,
            "details": self.details, "fault": self.fault, "error": self.error,
            "duration_ms": self.duration_ms, "at_ms": self.at_ms}
        if self.protocol == "kafka":
            described["topics"] = list(self.topics)
            described["partitions"] = [list(p) for p in self.partitions]
            described["errors"] = self.errors
        else:
            described["channel"] = self.channel
            described["reply_code"] = self.reply_code
        return described


class RequestLog:
    """The last requests of both protocols, newest last, in a ring of ``size``
    (``control.request_log_size``); off until a test turns it on (while on, a request
    costs a record, and AMQP method frames a decode)."""

    def __init__(self, changed: Callable[[], None] | None = None,
                 size: int = DEFAULT_REQUEST_LOG) -> None:
        self.enabled = False
        self.entries: deque[RequestEntry] = deque(maxlen=size)
        self._changed = changed

    def configure(self, *, enabled: bool, size: int | None = None) -> None:
        if size is not None:
            if not 1 <= size <= MAX_REQUEST_LOG:
                raise ControlError(f"size must be between 1 and {MAX_REQUEST_LOG}")
            self.entries = deque(self.entries, maxlen=size)
        self.enabled = enabled
        if self._changed is not None:
            self._changed()

    def add(self, entry: RequestEntry) -> RequestEntry:
        self.entries.append(entry)
        return entry

    def find(self, *, protocol: str | None = None, api: str | None = None,
             topic: str | None = None, client_id: str | None = None,
             connection: str | None = None, queue: str | None = None,
             exchange: str | None = None, errors_only: bool = False,
             since_ms: int | None = None) -> Iterable[RequestEntry]:
        """The entries that match every filter given; ``api`` matches a Kafka API name
        or an AMQP method ("basic.publish") without regard to case."""
        api = api.lower() if api is not None else None
        for entry in self.entries:
            details = entry.details
            if ((protocol is None or entry.protocol == protocol)
                    and (api is None or entry.api.lower() == api)
                    and (topic is None or topic in entry.topics)
                    and (client_id is None or entry.client_id == client_id)
                    and (connection is None or entry.connection == connection)
                    and (queue is None or details.get("queue") == queue)
                    and (exchange is None or details.get("exchange") == exchange)
                    and (not errors_only or bool(entry.errors) or entry.error is not None
                         or (entry.reply_code is not None and entry.reply_code != 200))
                    and (since_ms is None or entry.at_ms >= since_ms)):
                yield entry

    def clear(self) -> int:
        count = len(self.entries)
        self.entries.clear()
        return count


@dataclass(slots=True)
class ResetResult:
    topics: int = 0
    groups: int = 0
    offsets: int = 0
    queues: int = 0
    exchanges: int = 0
    messages: int = 0
    took_ms: float = 0.0


class BrokerState(Protocol):
    """What of the broker core a reset and the alarms reach (``core.Broker``; named here
    by what it has, so that core, which builds Control, is not imported back)."""

    topics: Topics
    groups: Groups
    amqp: VirtualHosts | None
    alarms: Alarms
    definitions: Definitions


class Control:
    def __init__(self, broker: BrokerState, request_log_size: int = DEFAULT_REQUEST_LOG
                 ) -> None:
        self.broker = broker
        self.faults = Faults(self._hooks_changed)
        self.requests = RequestLog(self._hooks_changed, request_log_size)
        # Read on every Kafka request: the request goes through the fault and log hook
        # only while this is set.
        self.kafka_hooked = False
        # How each protocol server closes all its client connections.
        self._closers: list[tuple[str | None, Callable[[], int]]] = []
        # Listener protocol -> monotonic time until which new connections are refused.
        self._refused_until: dict[str, float] = {}

    def _hooks_changed(self) -> None:
        self.kafka_hooked = self.faults.kafka or self.requests.enabled
        self.faults.amqp_hooked = self.faults.amqp or self.requests.enabled

    def on_close_all(self, closer: Callable[[], int], protocol: str | None = None) -> None:
        self._closers.append((protocol, closer))

    def close_all_connections(self, protocol: str | None = None) -> int:
        """What clients see of a broker restart: every connection (of ``protocol``)
        closed at once."""
        closed = sum(closer() for name, closer in self._closers
                     if protocol is None or name == protocol)
        log.info("all client connections closed on request", extra={"fields": {
            "connections": closed, "protocol": protocol}})
        return closed

    # -- listeners -----------------------------------------------------------------------

    def refuse_connections(self, protocol: str, duration_ms: int, *,
                           close_existing: bool = False) -> int:
        """Reset every new connection to ``protocol``'s listeners for ``duration_ms``
        (0 ends a refusal); with ``close_existing``, close the open ones too: a broker
        that is down, as clients see it. Returns the connections closed."""
        if protocol not in PROTOCOLS:
            raise ControlError(f"listener must be one of {', '.join(PROTOCOLS)}")
        if not 0 <= duration_ms <= MAX_REFUSE_MS:
            raise ControlError(f"duration_ms must be between 0 and {MAX_REFUSE_MS}")
        if duration_ms:
            self._refused_until[protocol] = time.monotonic() + duration_ms / 1000
        else:
            self._refused_until.pop(protocol, None)
        log.info("listener refuses connections", extra={"fields": {
            "protocol": protocol, "duration_ms": duration_ms}})
        return self.close_all_connections(protocol) if close_existing else 0

    def refusing(self, protocol: str) -> bool:
        """Whether ``protocol``'s listeners refuse new connections now."""
        until = self._refused_until.get(protocol)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._refused_until[protocol]
        return False

    def refusals(self) -> dict[str, int]:
        """Listener protocol -> milliseconds it still refuses connections."""
        now = time.monotonic()
        return {name: max(0, round((until - now) * 1000))
                for name, until in self._refused_until.items() if until > now}

    # -- storage -----------------------------------------------------------------------

    def fail_syncs(self, count: int) -> int:
        """Make the next ``count`` fdatasyncs of the logs fail with EIO (0 stops): the
        broker answers as for a failing disk. Returns how many are still to fail."""
        if not 0 <= count <= MAX_FAILING_SYNCS:
            raise ControlError(f"count must be between 0 and {MAX_FAILING_SYNCS}")
        files.fail_next_syncs(count)
        log.info("fsync failures injected", extra={"fields": {"count": count}})
        return files.failing_syncs()

    # -- alarms ------------------------------------------------------------------------

    def raise_alarm(self, resource: str) -> None:
        if resource not in ALARMS:
            raise ControlError(f"alarm must be one of {', '.join(ALARMS)}")
        self.broker.alarms.forced.add(resource)
        self.broker.alarms.set(resource, forced=1)

    def clear_alarm(self, resource: str) -> None:
        if resource not in ALARMS:
            raise ControlError(f"alarm must be one of {', '.join(ALARMS)}")
        self.broker.alarms.forced.discard(resource)
        self.broker.alarms.clear(resource, forced=0)

    # -- reset -------------------------------------------------------------------------

    def reset(self, *, vhost: str | None = None, prefix: str = "",
              keep_topics: Collection[str] = (),
              keep_queues: Collection[tuple[str, str]] = ()) -> ResetResult:
        """Delete what users created, as their own deletes would: consumers of a deleted
        queue get Basic.Cancel, Kafka clients UNKNOWN_TOPIC_OR_PARTITION. Configured vhosts
        and users stay. ``vhost`` limits the reset to that AMQP vhost (Kafka untouched);
        ``prefix`` to topics, groups, queues and exchanges whose names start with it.
        ``keep_topics`` stay with their records (a restore keeps the unchanged ones);
        ``keep_queues`` ((vhost, queue) pairs) stay, purged (a restore refills them)."""
        started = time.perf_counter()
        with self.broker.definitions.batch():
            result = self._reset(vhost, prefix, keep_topics, keep_queues)
        result.took_ms = round((time.perf_counter() - started) * 1000, 3)
        log.info("reset", extra={"fields": {"vhost": vhost, "prefix": prefix,
                                            "topics": result.topics, "queues": result.queues,
                                            "took_ms": result.took_ms}})
        return result

    def _reset(self, vhost: str | None, prefix: str, keep_topics: Collection[str],
               keep_queues: Collection[tuple[str, str]]) -> ResetResult:
        result = ResetResult()
        amqp = self.broker.amqp
        vhosts = list(amqp) if amqp is not None else []
        if vhost is not None:
            vhosts = [v for v in vhosts if v.name == vhost]
            if not vhosts:
                raise ControlError(f"no vhost {vhost!r}")
        else:
            self._reset_kafka(prefix, keep_topics, result)
        for host in vhosts:
            storage = host.storage
            kept = {name for vhost_name, name in keep_queues if vhost_name == host.name}
            # Removing every queue of a vhost is one directory rename; kept ones stay.
            with (storage.removing_vhost(host.name)
                  if storage is not None and not prefix and not kept
                  else contextlib.nullcontext()):
                # A topic's partitions (yields_name) go with the topic, not the vhost.
                for queue in [q for q in host.queues.values()
                              if q.name.startswith(prefix) and not q.yields_name]:
                    if queue.name in kept:
                        result.messages += queue.purge()
                        continue
                    result.messages += host.remove_queue(queue)
                    result.queues += 1
            for name in [n for n in host.exchanges if n and not n.startswith("amq.")
                         and n.startswith(prefix)]:
                if name in host.exchanges:  # an auto-delete one may have gone with another
                    host.delete_exchange(name)
                    result.exchanges += 1
        if amqp is not None:
            amqp.commit()
        return result

    def _reset_kafka(self, prefix: str, keep_topics: Collection[str],
                     result: ResetResult) -> None:
        broker = self.broker
        for topic in [t for t in broker.topics
                      if t.name.startswith(prefix) and t.name not in keep_topics]:
            result.messages += sum(p.high_watermark - p.log_start_offset
                                   for p in topic.partitions)
            broker.topics.delete(topic.name)
            result.topics += 1
        groups = broker.groups
        keys: dict[str, list[tuple[str, int]]] = {}
        for g, t, p in groups.stored.partition_keys():
            if g.startswith(prefix):
                keys.setdefault(g, []).append((t, p))
        for group in [g for g in groups if g.group_id.startswith(prefix)]:
            committed = keys.get(group.group_id, [])
            if not group.members:
                groups.delete([group.group_id])
                result.groups += 1
                result.offsets += len(committed)
            else:
                # A group with live members stays (they rejoin as with a moved
                # coordinator); what it committed goes.
                result.offsets += groups.stored.drop(group.group_id, committed)
