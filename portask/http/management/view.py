"""What the management API knows of the broker, in one place.

Every read of broker state by the API's resource modules goes through ``BrokerView``:
it is the only module here that imports from ``portask.broker``, so a change in the
broker's layout touches this file and not the endpoints.
"""

from __future__ import annotations

__all__ = ["HASHING", "BrokerView", "InvalidUser", "TopicPermission", "VirtualHost",
           "user_json"]

import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from portask import __version__
from portask.broker.amqp.definitions_import import (
    ImportReport,
    InvalidDefinitions,
    import_definitions,
)
from portask.broker.amqp.errors import AccessRefused, BrokerError, NotFound
from portask.broker.amqp.policies import InvalidPolicy, Policy, parse_policy
from portask.broker.amqp.queues import Message
from portask.broker.amqp.vhosts import AnyQueue, QueueTotals, VirtualHost, queue_totals
from portask.broker.clients import ConnectionView
from portask.broker.user_store import (
    ADMINISTRATOR,
    HASHING,
    MANAGEMENT_TAGS,
    InvalidUser,
    TopicPermission,
    UserStore,
    user_json,
)
from portask.broker.users import Users

__all__ = ["API_OWNER", "AnyQueue", "BrokerView", "ImportReport", "InvalidDefinitions",
           "InvalidPolicy", "Policy", "VirtualHost", "broker_errors", "new_message",
           "parse_policy"]
from portask.http.management.api import ApiError, bad_request, not_found
from portask.http.management.stats import Rates
from portask.listeners import Listener

if TYPE_CHECKING:
    from portask.broker.core import Broker
    from portask.config import Settings

# The owner the API acts as for queue operations: never the owner of an exclusive
# queue, so those are refused (405 RESOURCE_LOCKED) as on RabbitMQ.
API_OWNER = object()
NODE_NAME = "portask@" + platform.node()
# The RabbitMQ release whose management API and metrics this one follows.
RABBITMQ_VERSION = "3.10.8"


@contextlib.contextmanager
def broker_errors() -> Iterator[None]:
    """The broker's AMQP errors as RabbitMQ's API reports them (rabbit_mgmt_util)."""
    try:
        yield
    except NotFound as err:
        raise ApiError(404, "not_found", err.text) from None
    except AccessRefused:
        raise ApiError(401, "not_authorised", "Access refused.") from None
    except BrokerError as err:
        raise bad_request(err.text) from None


def new_message(exchange: str, routing_key: str, properties: bytes, body: bytes, *,
                persistent: bool, priority: int, expiration: int | None) -> Message:
    return Message(exchange, routing_key, properties, body, persistent, priority, expiration)


class BrokerView:
    def __init__(self, broker: Broker, settings: Settings,
                 listeners: Callable[[], list[Listener]]) -> None:
        self.broker = broker
        self.settings = settings
        self.listeners = listeners
        self.rates = Rates()
        self.users = Users(settings.auth.users)
        # The broker's one user store (app.py sets it); one of its own when built alone.
        self.store: UserStore = broker.users or UserStore(
            self.users, settings.amqp.default_user, settings.amqp.default_password)
        self.started = time.time()

    # -- vhosts and queues -------------------------------------------------------------

    def vhosts(self) -> list[VirtualHost]:
        amqp = self.broker.amqp
        return list(amqp) if amqp is not None else []

    def vhost(self, name: str) -> VirtualHost:
        amqp = self.broker.amqp
        found = amqp.get(name) if amqp is not None else None
        if found is None:
            raise not_found()
        return found

    def scoped(self, name: str | None) -> list[VirtualHost]:
        """One vhost when the path names one (404 if it does not exist), else all."""
        return [self.vhost(name)] if name is not None else self.vhosts()

    def create_vhost(self, name: str) -> bool:
        amqp = self.broker.amqp
        if amqp is None:
            raise bad_request("the AMQP listener is not enabled")
        existed = amqp.get(name) is not None
        amqp.create(name)
        return not existed

    def delete_vhost(self, name: str) -> bool:
        amqp = self.broker.amqp
        return amqp.delete(name) if amqp is not None else False

    def import_definitions(self, document: Any, vhost: str | None = None) -> ImportReport:
        """InvalidDefinitions (400) when the document cannot be imported."""
        amqp = self.broker.amqp
        if amqp is None:
            raise bad_request("the AMQP listener is not enabled")
        return import_definitions(document, amqp, self.store, vhost=vhost)

    def queue(self, vhost: str, name: str) -> AnyQueue:
        queue = self.vhost(vhost).queues.get(name)
        if queue is None:
            raise not_found()
        return queue

    def all_queues(self) -> Iterator[AnyQueue]:
        for vhost in self.vhosts():
            yield from list(vhost.queues.values())

    def commit(self) -> None:
        """Write what publishes appended (the AMQP listener does this once per read)."""
        amqp = self.broker.amqp
        if amqp is not None:
            amqp.commit()

    def user_names(self) -> list[str]:
        return self.store.names()

    def authenticate(self, user: str, password: str) -> bool:
        return self.store.check_password(user, password)

    def authorize(self, user: str, method: str, segments: list[str]) -> ApiError | None:
        """RabbitMQ's management tags: any of administrator, monitoring, policymaker or
        management opens the API; changing users and permissions needs administrator."""
        found = self.store.get(user)
        tags = set(found.tags) if found is not None else set()
        if not tags & MANAGEMENT_TAGS:
            return ApiError(401, "not_authorised", "Not management user")
        changes = method not in ("GET", "HEAD")
        restricted = ("users", "permissions", "topic-permissions", "vhosts", "definitions")
        if changes and segments and segments[0] in restricted and ADMINISTRATOR not in tags:
            return ApiError(401, "not_authorised", "Not administrator user")
        if changes and segments and segments[0] == "policies" \
                and not tags & {ADMINISTRATOR, "policymaker"}:
            return ApiError(401, "not_authorised", "Not policymaker user")
        return None

    def connections(self) -> list[ConnectionView]:
        return list(self.broker.clients.views())

    def queue_counters(self, queue: AnyQueue) -> QueueTotals:
        return queue_totals(queue)

    def totals(self, vhosts: list[VirtualHost]) -> QueueTotals:
        total = QueueTotals()
        for vhost in vhosts:
            total.merge(vhost.totals())
        return total

    # -- node --------------------------------------------------------------------------

    def node(self) -> str:
        return NODE_NAME

    def cluster_name(self) -> str:
        return NODE_NAME

    def memory_used(self) -> int:
        try:
            with open("/proc/self/statm", "rb") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def mem_limit(self) -> int:
        return int(self.settings.amqp.memory_high_watermark_bytes)

    def disk_free(self) -> int:
        try:
            st = os.statvfs(self.settings.server.data_dir)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def alarms(self) -> set[str]:
        return set(self.broker.alarms.active)

    def listener_list(self) -> list[dict[str, Any]]:
        protocols = {"amqp": "amqp", "http": "prometheus", "kafka": "kafka",
                     "management": "http"}
        return [{"node": NODE_NAME, "protocol": protocols.get(lst.name, lst.name),
                 "ip_address": lst.host, "port": lst.port, "socket_opts": {}}
                for lst in self.listeners() if lst.state == "listening"]

    @staticmethod
    def product() -> dict[str, str]:
        return {"product_name": "Portask", "product_version": __version__,
                "rabbitmq_version": RABBITMQ_VERSION, "management_version": RABBITMQ_VERSION,
                "erlang_version": f"Python {platform.python_version()}"}
