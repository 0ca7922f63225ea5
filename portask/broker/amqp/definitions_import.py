"""Import of RabbitMQ's definitions JSON, as ``rabbitmqctl export_definitions`` and
``GET /api/definitions`` write it, into the running broker.

Callable from anywhere that holds the vhosts and the user store: start-up
(``--definitions FILE``, ``amqp.load_definitions``), the management API
(``POST /api/definitions[/{vhost}]``) and the control API. Everything is checked before
anything changes, so a bad file changes nothing and ``InvalidDefinitions`` says which
entry is wrong and why. Then, in RabbitMQ's order (``rabbit_definitions:apply_defs``):
users, vhosts, permissions, topic permissions, exchanges, policies, queues, bindings.
As in RabbitMQ, a queue or exchange that already exists is left as it is, and names
starting ``amq.`` are skipped. What Portask has no counterpart for is accepted and left
out of the report's ``created`` counts (``skipped`` names it): runtime parameters
(federation, shovel), global parameters, vhost limits.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portask.broker.amqp.errors import BrokerError
from portask.broker.amqp.exchanges import EXCHANGE_TYPES
from portask.broker.amqp.exchanges.headers import match_mode
from portask.broker.amqp.policies import InvalidPolicy, Policy, parse_policy
from portask.broker.amqp.queue_args import parse_queue_arguments
from portask.broker.amqp.vhosts import VirtualHosts
from portask.broker.user_store import (
    HASHING,
    KINDS,
    InvalidUser,
    TopicPermission,
    UserStore,
)

log = logging.getLogger("portask.amqp")

# Entries per section: far above any real topology, low enough that a hostile file
# cannot make the broker build millions of objects.
MAX_ENTRIES = 100_000
# AMQP short strings: a queue, exchange or routing key longer than this could never
# be declared or bound over the protocol.
MAX_NAME_BYTES = 255
# A definitions file read at start-up (the HTTP API bounds its bodies itself).
MAX_FILE_BYTES = 64 << 20
SECTIONS = ("users", "vhosts", "permissions", "topic_permissions", "parameters",
            "global_parameters", "policies", "queues", "exchanges", "bindings")
# The owner imported queues are declared by: never a connection, as nothing imported
# is exclusive.
_IMPORTER = object()


class InvalidDefinitions(ValueError):
    """The document cannot be imported; the message names the entry and the problem."""


@dataclass
class ImportReport:
    """What an import did: objects created per kind, and what it left out and why."""

    created: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def count(self, kind: str) -> None:
        self.created[kind] = self.created.get(kind, 0) + 1


@dataclass
class _Plan:
    # (name, password, password_hash, tags): one of password and password_hash is set.
    users: list[tuple[str, str | None, str | None, tuple[str, ...]]] = \
        field(default_factory=list)
    vhosts: list[str] = field(default_factory=list)
    permissions: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    topic_permissions: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    exchanges: list[tuple[int, str, str, str, bool, bool, bool, dict[str, Any]]] = \
        field(default_factory=list)
    policies: list[Policy] = field(default_factory=list)
    queues: list[tuple[int, str, str, bool, bool, dict[str, Any]]] = field(default_factory=list)
    bindings: list[tuple[int, str, str, str, str, str, dict[str, Any]]] = \
        field(default_factory=list)


def import_definitions(document: Any, vhosts: VirtualHosts, users: UserStore | None, *,
                       vhost: str | None = None) -> ImportReport:
    """Import a definitions document (already decoded from JSON).

    ``vhost`` set: the form of ``POST /api/definitions/{vhost}``: the objects' own vhost
    fields are ignored, users, vhosts and permissions are not imported, and the vhost
    must exist."""
    if not isinstance(document, dict):
        raise InvalidDefinitions("definitions must be a JSON object")
    report = ImportReport()
    plan = _check(document, vhosts, users, vhost, report)
    _apply(plan, vhosts, users, report)
    log.info("definitions imported", extra={"fields": {**report.created,
                                                       "skipped": len(report.skipped)}})
    return report


def load_file(path: Path, vhosts: VirtualHosts, users: UserStore | None) -> ImportReport:
    """Import a definitions file (start-up's ``--definitions``); InvalidDefinitions
    names the file and what is wrong with it."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidDefinitions(f"{path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidDefinitions(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidDefinitions(f"{path}: not JSON: {exc}") from None
    try:
        return import_definitions(document, vhosts, users)
    except InvalidDefinitions as exc:
        raise InvalidDefinitions(f"{path}: {exc}") from None


# -- checking ------------------------------------------------------------------------------


def _entries(document: dict[str, Any], section: str) -> list[tuple[str, dict[str, Any]]]:
    items = document.get(section)
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidDefinitions(f"{section} must be a list")
    if len(items) > MAX_ENTRIES:
        raise InvalidDefinitions(f"{section}: {len(items)} entries, at most {MAX_ENTRIES}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidDefinitions(f"{section}[{i}] must be a JSON object")
        out.append((f"{section}[{i}]", item))
    return out


def _text(where: str, item: dict[str, Any], key: str, *, default: str | None = None,
          name: bool = False) -> str:
    value = item.get(key, default)
    if not isinstance(value, str):
        raise InvalidDefinitions(f"{where}: {key} must be a string" if key in item
                                 else f"{where}: {key} is missing")
    if name and len(value.encode()) > MAX_NAME_BYTES:
        raise InvalidDefinitions(f"{where}: {key} longer than {MAX_NAME_BYTES} bytes")
    return value


def _flag(where: str, item: dict[str, Any], key: str, default: bool) -> bool:
    value = item.get(key, default)
    if value in ("true", "false"):
        return value == "true"
    if not isinstance(value, bool):
        raise InvalidDefinitions(f"{where}: {key} must be true or false")
    return value


def _table(where: str, item: dict[str, Any], key: str) -> dict[str, Any]:
    value = item.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidDefinitions(f"{where}: {key} must be a JSON object")
    return dict(value)


def _target_vhost(where: str, item: dict[str, Any], scope: str | None,
                  known: set[str]) -> str:
    name = scope if scope is not None else _text(where, item, "vhost")
    if name not in known:
        raise InvalidDefinitions(f"{where}: no vhost '{name}' (create it first, or list it "
                                 "under vhosts)")
    return name


def _tags(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # RabbitMQ before 3.9 wrote "administrator,management"
        return tuple(t.strip() for t in value.split(",") if t.strip())
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return tuple(value)
    raise InvalidDefinitions(f"{where}: tags must be a list of strings")


def _check(document: dict[str, Any], vhosts: VirtualHosts, users: UserStore | None,
           scope: str | None, report: ImportReport) -> _Plan:
    plan = _Plan()
    known_vhosts = {v.name for v in vhosts}
    if scope is not None and scope not in known_vhosts:
        raise InvalidDefinitions(f'Please create virtual host "{scope}" prior to importing '
                                 "definitions.")
    if scope is None:
        _check_access(document, users, plan, known_vhosts, report)
    for where, item in _entries(document, "parameters"):
        report.skipped.append(f"{where}: runtime parameter {item.get('component')!r} "
                              f"{item.get('name')!r} (no such component in Portask)")
    _check_exchanges(document, scope, known_vhosts, plan)
    for where, item in _entries(document, "policies"):
        vhost = _target_vhost(where, item, scope, known_vhosts)
        name = _text(where, item, "name")
        try:
            plan.policies.append(parse_policy(vhost, name, item))
        except InvalidPolicy as exc:
            raise InvalidDefinitions(f"{where}: policy '{name}' in vhost '{vhost}': "
                                     f"{exc}") from None
    _check_queues(document, scope, known_vhosts, plan)
    _check_bindings(document, scope, known_vhosts, plan, vhosts)
    return plan


def _check_bindings(document: dict[str, Any], scope: str | None, known_vhosts: set[str],
                    plan: _Plan, vhosts: VirtualHosts) -> None:
    """Both ends must exist (here or in the document), so that applying cannot fail
    half-way on a binding."""
    exchange_types = {(e[1], e[2]): e[3] for e in plan.exchanges}
    queues = {(q[1], q[2]) for q in plan.queues}
    for where, item in _entries(document, "bindings"):
        vhost = _target_vhost(where, item, scope, known_vhosts)
        kind = _text(where, item, "destination_type")
        if kind not in ("queue", "exchange"):
            raise InvalidDefinitions(f"{where}: destination_type must be queue or exchange")
        source = _text(where, item, "source", name=True)
        destination = _text(where, item, "destination", name=True)
        arguments = _table(where, item, "arguments")
        existing = vhosts.get(vhost)
        source_type = exchange_types.get((vhost, source))
        if source_type is None and existing is not None and source in existing.exchanges:
            source_type = existing.exchanges[source].kind
        if source_type is None or not source:
            raise InvalidDefinitions(f"{where}: no exchange '{source}' in vhost '{vhost}'")
        if kind == "queue":
            found = (vhost, destination) in queues or (
                existing is not None and destination in existing.queues)
        else:
            found = (vhost, destination) in exchange_types or (
                existing is not None and destination in existing.exchanges)
        if not found:
            raise InvalidDefinitions(f"{where}: no {kind} '{destination}' in vhost "
                                     f"'{vhost}'")
        if source_type == "headers" and match_mode(arguments) is None:
            raise InvalidDefinitions(f"{where}: invalid x-match field value "
                                     f"{arguments.get('x-match')!r}; expected all, any, "
                                     "all-with-x or any-with-x")
        plan.bindings.append((len(plan.bindings), vhost, source, kind, destination,
                              _text(where, item, "routing_key", default="", name=True),
                              arguments))


def _check_access(document: dict[str, Any], users: UserStore | None, plan: _Plan,
                  known_vhosts: set[str], report: ImportReport) -> None:
    """Users, vhosts, permissions: only in a whole-broker import."""
    for where, item in _entries(document, "users"):
        plan.users.append(_user(where, item, users))
    for where, item in _entries(document, "vhosts"):
        name = _text(where, item, "name", name=True)
        if not name:
            raise InvalidDefinitions(f"{where}: a vhost needs a name")
        plan.vhosts.append(name)
        known_vhosts.add(name)
        if item.get("limits"):
            report.skipped.append(f"{where}: vhost limits (not enforced by Portask)")
    known_users = {u[0] for u in plan.users} | set(users.names() if users else ())
    for where, item in _entries(document, "permissions"):
        user = _text(where, item, "user")
        if user not in known_users:
            raise InvalidDefinitions(f"{where}: no user '{user}'")
        vhost = _target_vhost(where, item, None, known_vhosts)
        configure, write, read = (_text(where, item, k, default="") for k in KINDS)
        for kind, expression in zip(KINDS, (configure, write, read), strict=True):
            try:
                re.compile(expression)
            except re.error as exc:
                raise InvalidDefinitions(f"{where}: {kind} {expression!r} is not a "
                                         f"regular expression: {exc}") from None
        plan.permissions.append((user, vhost, configure, write, read))
    for where, item in _entries(document, "topic_permissions"):
        user = _text(where, item, "user")
        if user not in known_users:
            raise InvalidDefinitions(f"{where}: no user '{user}'")
        vhost = _target_vhost(where, item, None, known_vhosts)
        exchange = _text(where, item, "exchange", name=True)
        write, read = (_text(where, item, k, default="") for k in ("write", "read"))
        try:
            TopicPermission(write, read)
        except InvalidUser as exc:
            raise InvalidDefinitions(f"{where}: {exc}") from None
        plan.topic_permissions.append((user, vhost, exchange, write, read))
    for where, item in _entries(document, "global_parameters"):
        report.skipped.append(f"{where}: global parameter {item.get('name')!r}")


def _user(where: str, item: dict[str, Any], users: UserStore | None
          ) -> tuple[str, str | None, str | None, tuple[str, ...]]:
    name = _text(where, item, "name")
    if not name:
        raise InvalidDefinitions(f"{where}: a user needs a name")
    if users is None:
        raise InvalidDefinitions(f"{where}: this broker has no user store")
    algorithm = item.get("hashing_algorithm", HASHING)
    if algorithm != HASHING:
        raise InvalidDefinitions(
            f"{where}: user '{name}' has hashing_algorithm {algorithm!r}; Portask "
            f"takes only {HASHING} (RabbitMQ's default since 3.6)")
    if "password" in item and "password_hash" not in item:
        # Kept as a password (not hashed here) so the store derives Kafka SCRAM keys too.
        return name, _text(where, item, "password"), None, _tags(where, item.get("tags"))
    password_hash = _text(where, item, "password_hash", default="")
    if password_hash and _decoded_length(password_hash) != 36:
        raise InvalidDefinitions(f"{where}: password_hash of user '{name}' is "
                                 f"not a {HASHING} hash")
    return name, None, password_hash, _tags(where, item.get("tags"))


def _check_exchanges(document: dict[str, Any], scope: str | None, known_vhosts: set[str],
                     plan: _Plan) -> None:
    for where, item in _entries(document, "exchanges"):
        vhost = _target_vhost(where, item, scope, known_vhosts)
        name = _text(where, item, "name", name=True)
        kind = _text(where, item, "type")
        if kind not in EXCHANGE_TYPES:
            raise InvalidDefinitions(f"{where}: unknown exchange type '{kind}'")
        plan.exchanges.append((
            len(plan.exchanges), vhost, name, kind, _flag(where, item, "durable", True),
            _flag(where, item, "auto_delete", False), _flag(where, item, "internal", False),
            _table(where, item, "arguments")))


def _check_queues(document: dict[str, Any], scope: str | None, known_vhosts: set[str],
                  plan: _Plan) -> None:
    for where, item in _entries(document, "queues"):
        vhost = _target_vhost(where, item, scope, known_vhosts)
        name = _text(where, item, "name", name=True)
        if not name:
            raise InvalidDefinitions(f"{where}: a queue needs a name")
        durable = _flag(where, item, "durable", True)
        auto_delete = _flag(where, item, "auto_delete", False)
        arguments = _table(where, item, "arguments")
        try:
            parse_queue_arguments(arguments, queue=name, vhost=vhost, durable=durable,
                                  exclusive=False, auto_delete=auto_delete)
        except BrokerError as exc:
            raise InvalidDefinitions(f"{where}: {exc.text}") from None
        plan.queues.append((len(plan.queues), vhost, name, durable, auto_delete, arguments))


def _decoded_length(password_hash: str) -> int:
    try:
        return len(base64.b64decode(password_hash, validate=True))
    except (binascii.Error, ValueError):
        return -1


# -- applying ------------------------------------------------------------------------------


def _apply(plan: _Plan, vhosts: VirtualHosts, users: UserStore | None,
           report: ImportReport) -> None:
    _apply_access(plan, vhosts, users, report)
    for i, vhost_name, name, kind, durable, auto_delete, internal, arguments in plan.exchanges:
        if not name or name.startswith("amq."):
            report.skipped.append(f"exchanges[{i}]: '{name}' (a name RabbitMQ reserves)")
            continue
        vhost = _vhost(vhosts, vhost_name)
        if name not in vhost.exchanges:
            with _entry("exchanges", i):
                vhost.declare_exchange(name, kind, durable=durable, auto_delete=auto_delete,
                                       internal=internal, arguments=arguments)
            report.count("exchanges")
    for policy in plan.policies:
        _vhost(vhosts, policy.vhost).set_policy(policy)
        report.count("policies")
    for i, vhost_name, name, durable, auto_delete, arguments in plan.queues:
        if name.startswith("amq."):
            report.skipped.append(f"queues[{i}]: '{name}' (a name RabbitMQ reserves)")
            continue
        vhost = _vhost(vhosts, vhost_name)
        if name not in vhost.queues:
            with _entry("queues", i):
                vhost.declare_queue(name, owner=_IMPORTER, durable=durable,
                                    auto_delete=auto_delete, arguments=arguments)
            report.count("queues")
    for i, vhost_name, source, kind, destination, routing_key, arguments in plan.bindings:
        vhost = _vhost(vhosts, vhost_name)
        with _entry("bindings", i):
            if kind == "queue":
                vhost.bind_queue(destination, source, routing_key, arguments, _IMPORTER)
            else:
                vhost.bind_exchange(destination, source, routing_key, arguments)
        report.count("bindings")


def _apply_access(plan: _Plan, vhosts: VirtualHosts, users: UserStore | None,
                  report: ImportReport) -> None:
    if users is not None:
        for name, password, password_hash, tags in plan.users:
            users.put_user(name, password=password, password_hash=password_hash, tags=tags)
            report.count("users")
    for name in plan.vhosts:
        if vhosts.get(name) is None:
            vhosts.create(name)
            report.count("vhosts")
    if users is not None:
        for user, vhost, configure, write, read in plan.permissions:
            users.set_permission(user, vhost, configure, write, read)
            report.count("permissions")
        for user, vhost, exchange, write, read in plan.topic_permissions:
            users.set_topic_permission(user, vhost, exchange, write, read)
            report.count("topic_permissions")


@contextlib.contextmanager
def _entry(section: str, index: int) -> Iterator[None]:
    """A refusal by the vhost (a binding to a missing queue) as the entry's error."""
    try:
        yield
    except BrokerError as exc:
        raise InvalidDefinitions(f"{section}[{index}]: {exc.text}") from None


def _vhost(vhosts: VirtualHosts, name: str) -> Any:
    found = vhosts.get(name)
    if found is None:  # deleted between the check and now: nothing awaits in between
        raise InvalidDefinitions(f"no vhost '{name}'")
    return found
