"""Composition root: opens the broker on bound listeners and serves until a signal.

The CLI binds the sockets before importing this module (see ``listeners.bind_all``):
a busy port fails before any data is touched, and clients can connect while the rest
loads. Here the data directory is locked, the broker opened, and the protocol
handlers attached to the already-listening sockets. Shutdown runs the other way and
flushes and closes every log.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from portask import __version__, metrics
from portask.broker.core import Broker
from portask.broker.user_store import UserStore
from portask.broker.users import Users
from portask.config import Settings
from portask.http.server import (
    OK,
    SITE_MAX_BODY_BYTES,
    STOPPING,
    HealthState,
    HttpServer,
    Request,
    Response,
    Routes,
)
from portask.listeners import Listener, refusable
from portask.storage import StorageError
from portask.storage.keyvalue import KeyValueStoreError

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from portask.broker.amqp.message_store import QueueStorage
    from portask.broker.amqp.vhosts import VirtualHosts
    from portask.broker.kafka.topics import Partition
    from portask.broker.topic_streams import TopicFeeds
    from portask.http.console import Console
    from portask.http.management import ManagementApi
    from portask.protocols.amqp.server import AmqpServer
    from portask.protocols.kafka.server import KafkaServer

log = logging.getLogger("portask")


class StartupError(RuntimeError):
    """The broker cannot start; the message says what and where."""


class DataDirLock:
    """An exclusive lock so that two brokers never write the same data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        data_dir = self.path.parent
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StartupError(
                f"data dir {data_dir} is not usable: {exc.strerror}; "
                "set server.data_dir / --data-dir to a writable directory"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StartupError(
                f"data dir {data_dir} is in use by another portask process (pid {holder}); "
                "stop it or choose another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class App:
    def __init__(self, settings: Settings, listeners: list[Listener]) -> None:
        self.settings = settings
        self.listeners = listeners
        self.broker: Broker | None = None
        self._lock = DataDirLock(Path(settings.server.data_dir))
        self._http: HttpServer | None = None
        self._management: HttpServer | None = None
        self._management_api: ManagementApi | None = None
        self._console: Console | None = None
        self._health: HealthState | None = None
        self.kafka: KafkaServer | None = None
        self.amqp: AmqpServer | None = None
        self.users: UserStore | None = None
        self._topic_feeds: TopicFeeds | None = None
        self._kafka_listeners: list[Listener] = []

    def listener(self, name: str) -> Listener | None:
        return next((lst for lst in self.listeners if lst.name == name), None)

    async def start(self) -> None:
        started = time.perf_counter()
        health = HealthState(lambda: self.listeners)
        self._health = health
        http_listener = self.listener("http")
        if http_listener is not None:
            self._http = HttpServer(http_listener, Routes(health, self._site),
                                    max_body=SITE_MAX_BODY_BYTES)
            await self._http.start()
        https_listener = self.listener("http_tls")
        if https_listener is not None:
            await HttpServer(https_listener, Routes(health, self._site),
                             max_body=SITE_MAX_BODY_BYTES).start()
        self._lock.acquire()
        try:
            self.broker = Broker(self.settings).open()
        except (KeyValueStoreError, StorageError, OSError) as exc:
            data_dir = self.settings.server.data_dir
            raise StartupError(f"cannot open data in {data_dir}: {exc}") from None
        if self.settings.kafka.topics_file is not None:
            self._load_topics(self.broker, Path(self.settings.kafka.topics_file))
        self.broker.start()
        # One user store for AMQP, the management API and (PLAIN) Kafka.
        self.users = UserStore(Users(self.settings.auth.users), self.settings.amqp.default_user,
                               self.settings.amqp.default_password, self.broker.definitions)
        self.broker.users = self.users
        metrics.bind_storage_gauges(
            self.broker.logs.segment_count, self.broker.logs.size_bytes, self.broker.logs.log_count
        )
        metrics.bind_compat_gauges(self.broker.amqp_snapshot, self.broker.kafka_snapshot)
        kafka = [lst for lst in self.listeners if lst.kafka is not None]
        if kafka:
            await self._serve_kafka(kafka, self.broker)
        amqp = [lst for lst in (self.listener("amqp"), self.listener("amqp_tls")) if lst]
        if amqp:
            self.amqp = self._amqp_server(self.broker)
            for lst in amqp:
                await lst.serve(refusable(self.amqp.connection,
                                          partial(self.broker.control.refusing, "amqp")))
        management = [lst for lst in (self.listener("management"),
                                      self.listener("management_tls")) if lst]
        if management:
            from portask.http.management import MAX_BODY_BYTES, ManagementApi

            self._management_api = ManagementApi(self.broker, self.settings,
                                                 lambda: self.listeners)
            for lst in management:
                server = HttpServer(lst, self._management_api.handler,
                                    max_body=MAX_BODY_BYTES)
                await server.start()
                self._management = self._management or server
            self._management_api.start()
        for lst in self.listeners:
            print(f"portask: {lst.name} listening on {lst.address}", flush=True)
        health.status = OK
        startup_ms = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            "ready",
            extra={"fields": {"version": __version__, "startup_ms": startup_ms,
                              "data_dir": str(self.settings.server.data_dir)}},
        )

    def _load_topics(self, broker: Broker, path: Path) -> None:
        """kafka.topics_file (--topics): topics and ACLs as `portask ctl export-kafka`
        writes them, created before any client connects."""
        from portask.broker.kafka import topology

        try:
            applied = topology.apply(topology.load_file(path), broker.topics, broker.kafka_acls)
        except topology.TopologyError as exc:
            raise StartupError(f"kafka.topics_file: {exc}") from None
        log.info("topics file loaded", extra={"fields": {
            "file": str(path), "created": applied.created, "changed": applied.changed,
            "acls": applied.acls}})

    def _site(self, request: Request) -> Response | Awaitable[Response]:
        """The console and its APIs on the HTTP listener, loaded on first use: a broker
        nobody browses keeps its start-up time and memory."""
        if self._console is None:
            if self.broker is None or self._health is None or self._health.status != OK:
                return Response(503, b"starting\n", "text/plain")
            if self._kafka_listeners:
                # The control API checks a fault rule's Kafka API name against those served.
                self._kafka_server()
            from portask.http.console import Console

            if self._management_api is None:
                from portask.http.management import ManagementApi

                self._management_api = ManagementApi(self.broker, self.settings,
                                                     lambda: self.listeners)
                self._management_api.start()
            self._console = Console(self.broker, self._management_api)
        return self._console(request)

    async def _serve_kafka(self, listeners: list[Listener], broker: Broker) -> None:
        # Imported here, not at the top: start-up loads only the protocols it serves.
        from portask.protocols.kafka import browse, compaction, txn_markers

        # What only Kafka's record format can do for the broker core: transaction
        # markers (and aborting what a crash left open), and compaction.
        txn_markers.attach(broker)
        limit = int(self.settings.kafka.max_uncompressed_batch_bytes)
        broker.topics.compactor = compaction.compactor(limit)
        # Records decoded and built for the HTTP API and the console.
        broker.topics.codec = browse.KafkaRecordCodec(limit)
        self._kafka_listeners = listeners
        broker.control.on_close_all(
            lambda: self.kafka.close_all() if self.kafka is not None else 0, "kafka")
        for listener in listeners:
            await listener.serve(refusable(partial(self._kafka_connection, listener),
                                           partial(broker.control.refusing, "kafka")))

    def _kafka_connection(self, listener: Listener) -> asyncio.BaseProtocol:
        return self._kafka_server().protocol_factory(listener)()

    def _kafka_server(self) -> KafkaServer:
        """The Kafka server, built at the first Kafka connection (or control API call):
        its ~30 API modules and kio's serializers are ~22 ms, a sixth of the start. The
        connection that triggers it waits that long once (the kernel has accepted it)."""
        if self.kafka is None:
            # Importing the index imports every API module, which registers its handler.
            from portask.protocols.kafka import (
                apis,  # noqa: F401
                faults,
            )
            from portask.protocols.kafka.server import KafkaServer

            assert self.broker is not None
            self.kafka = KafkaServer(self.broker, self.settings, self._kafka_listeners)
            self.broker.control.faults.apis["kafka"] = faults.known_apis()
        return self.kafka

    def _amqp_server(self, broker: Broker) -> AmqpServer:
        """AMQP's model on the broker: vhosts restored from the definitions and queue logs,
        messages stored by the AMQP property codec, publishers blocked by the alarms."""
        from portask.broker.amqp.message_store import QueueStorage
        from portask.broker.amqp.vhosts import VirtualHosts
        from portask.protocols.amqp.context import AmqpContext
        from portask.protocols.amqp.properties import AmqpPropertyCodec
        from portask.protocols.amqp.server import AmqpServer

        settings = self.settings
        names = [v.strip() for v in settings.amqp.vhosts.split(",") if v.strip()] or ["/"]
        storage = QueueStorage(broker.logs, fsync_always=settings.storage.fsync == "always",
                               segment_bytes=int(settings.amqp.queue_segment_bytes),
                               on_disk_full=broker.alarms.check_disk)
        vhosts = VirtualHosts(names, definitions=broker.definitions, storage=storage,
                              codec=AmqpPropertyCodec(), memory=broker.alarms.memory).open()
        broker.amqp = vhosts
        if settings.amqp.load_definitions:
            self._load_definitions(Path(settings.amqp.load_definitions), vhosts)
        self._attach_topic_streams(broker, vhosts, storage)
        server = AmqpServer(AmqpContext(settings.amqp, settings.network, vhosts,
                                        clients=broker.clients,
                                        alarms=frozenset(broker.alarms.active),
                                        users=self.users,
                                        faults=broker.control.faults,
                                        requests=broker.control.requests))
        broker.alarms.subscribe(server.alarms_changed)
        vhosts.deleting.append(server.close_vhost)
        if self.users is not None:
            vhosts.deleting.append(self.users.clear_vhost)
        broker.control.on_close_all(server.close_connections, "amqp")
        return server

    def _load_definitions(self, path: Path, vhosts: VirtualHosts) -> None:
        """RabbitMQ's load_definitions: the file is imported before clients connect."""
        from portask.broker.amqp.definitions_import import InvalidDefinitions, load_file

        try:
            report = load_file(path, vhosts, self.users)
        except InvalidDefinitions as exc:
            raise StartupError(f"cannot import definitions: {exc}") from None
        for line in report.skipped:
            log.info("definitions: not imported", extra={"fields": {"what": line}})

    def _attach_topic_streams(self, broker: Broker, vhosts: VirtualHosts,
                              storage: QueueStorage) -> None:
        """Kafka topics as stream queues in one vhost, when both protocols are served
        (the Kafka side installs the record codec the streams write through)."""
        from portask.broker.topic_streams import TopicFeeds, TopicStreams
        from portask.protocols.amqp import kafka_mapping

        name = self.settings.amqp.kafka_topics_vhost
        vhost = vhosts.get(name) if name else None
        if vhost is None or broker.topics.codec is None:
            if name and broker.topics.codec is not None:
                log.warning("kafka_topics_vhost names no vhost; topics are not streams",
                            extra={"fields": {"vhost": name}})
            return
        from portask.protocols.kafka import txn_markers

        messages = kafka_mapping.KafkaRecordMessages()

        def rebuild(partition: Partition) -> None:
            txn_markers.ensure_rebuilt(broker, partition)

        streams = TopicStreams(broker.topics, vhost, storage, messages,
                               kafka_mapping.to_record, rebuild)
        vhosts.restore_bindings_to(name, streams.attach())
        self._topic_feeds = TopicFeeds(broker.topics, vhost, messages, vhosts.commit,
                                       broker.definitions, rebuild)
        self._topic_feeds.start()

    async def _close_listeners(self) -> None:
        if self._management_api is not None:
            self._management_api.close()
        for lst in self.listeners:
            if lst.name != "http":
                await lst.close()

    async def stop(self) -> None:
        if self._health is not None:
            self._health.status = STOPPING
        if self._topic_feeds is not None:
            self._topic_feeds.stop()
        if self.amqp is not None:
            self.amqp.close_all()  # no publish may reach a queue log after it closes
        await self._close_listeners()
        if self._kafka_listeners and self.broker is not None:
            self.broker.transactions.stop()  # no transaction expires into a closing log
        if self.kafka is not None:
            self.kafka.close_all()
        if self.broker is not None:
            await self.broker.close()
            self.broker = None
        if self._http is not None:
            await self._http.close()
        else:
            http_listener = self.listener("http")
            if http_listener is not None:
                await http_listener.close()
        self._lock.release()
        log.info("stopped")


async def serve(settings: Settings, listeners: list[Listener]) -> int:
    app = App(settings, listeners)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
    except StartupError as exc:
        print(f"portask: error: {exc}", file=sys.stderr, flush=True)
        await app.stop()
        return 1
    await stop.wait()
    await app.stop()
    return 0


def run(settings: Settings, listeners: list[Listener]) -> int:
    loop_factory = None
    if settings.server.use_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve(settings, listeners))
