"""One user store for every protocol: who may log in, with which tags and permissions.

Two kinds of users:

- from configuration (``auth.users`` and ``amqp.default_user``): administrators with
  every permission on every vhost, as the broker always treated them, so nothing changes
  for setups that never create a user;
- created at run time (the management API's ``PUT /api/users/{name}``): durable in the
  definitions store, with a password hash in RabbitMQ's ``rabbit_password_hashing_sha256``
  format (base64 of a 4-byte salt and SHA-256(salt + password), so definitions move
  both ways), tags, and RabbitMQ's per-vhost configure/write/read regular expressions.
  A run-time user of the same name as a configured one replaces it.

Kafka's SCRAM mechanisms need salted keys derived from the password (RFC 5802), which a
RabbitMQ hash cannot give: a user created with a password gets SCRAM-SHA-256 and -512
credentials (4096 iterations, Kafka's default) derived then; a user created from a
``password_hash`` alone has none, and logs in to Kafka with PLAIN only. Kafka's
AlterUserScramCredentials sets or deletes credentials for any name (as Kafka, whose
credentials exist apart from any user list); they serve Kafka's SCRAM logins only.

Permissions are matched as RabbitMQ matches them: the expression is searched for
anywhere in the resource name (not anchored), and an empty expression means ``^$``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from portask.broker.users import (
    SCRAM_HASHES,
    SCRAM_ITERATIONS,
    ScramCredential,
    derive_scram,
)

if TYPE_CHECKING:
    from portask.broker.definitions import Definitions
    from portask.broker.users import Users

# Definitions store namespaces (USERS is shared with the definitions module's list).
USERS = "users"
PERMISSIONS = "permissions"
SCRAM_CREDENTIALS = "scram_credentials"  # key: (user, mechanism name)
TOPIC_PERMISSIONS = "topic_permissions"  # key: (user, vhost, exchange)
HASHING = "rabbit_password_hashing_sha256"
ADMINISTRATOR = "administrator"
# Tags that open the management API, as RabbitMQ's management plugin reads them.
MANAGEMENT_TAGS = frozenset(("administrator", "monitoring", "policymaker", "management"))
KINDS = ("configure", "write", "read")


class InvalidUser(ValueError):
    """A user or permission the store refuses; the message says why."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def check_hash(password_hash: str, password: str) -> bool:
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) != 36:
        return False
    salt, digest = raw[:4], raw[4:]
    return hmac.compare_digest(digest, hashlib.sha256(salt + password.encode()).digest())


@dataclass(frozen=True)
class Permission:
    """One user's configure/write/read expressions on one vhost."""

    configure: str
    write: str
    read: str
    _compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, compare=False,
                                                  repr=False)

    def __post_init__(self) -> None:
        for kind in KINDS:
            expression = getattr(self, kind)
            try:
                self._compiled[kind] = re.compile(expression or "^$")
            except re.error as exc:
                raise InvalidUser(f"{kind} permission {expression!r} is not a regular "
                                  f"expression: {exc}") from None

    def allows(self, kind: str, name: str) -> bool:
        return self._compiled[kind].search(name) is not None

    def as_dict(self) -> dict[str, str]:
        return {"configure": self.configure, "write": self.write, "read": self.read}


@dataclass(frozen=True)
class TopicPermission:
    """RabbitMQ's topic permission: write and read expressions on routing keys, for one
    user, vhost and topic exchange. ``{username}`` and ``{vhost}`` in an expression are
    replaced before it is matched (rabbit_auth_backend_internal's expand_topic_permission:
    the values go in as they are, unescaped)."""

    write: str
    read: str

    def __post_init__(self) -> None:
        for kind in ("write", "read"):
            expression = getattr(self, kind)
            try:
                re.compile(expression)
            except re.error as exc:
                raise InvalidUser(f"{kind} topic permission {expression!r} is not a regular "
                                  f"expression: {exc}") from None

    def allows(self, kind: str, routing_key: str, username: str, vhost: str) -> bool:
        expression = getattr(self, kind) or "^$"
        expanded = expression.replace("{username}", username).replace("{vhost}", vhost)
        try:
            return re.search(expanded, routing_key) is not None
        except re.error:  # a value expanded into the expression can break it: no match
            return False

    def as_dict(self) -> dict[str, str]:
        return {"write": self.write, "read": self.read}


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str
    tags: tuple[str, ...]
    configured: bool = False  # from the settings: every permission on every vhost


class UserStore:
    def __init__(self, configured: Users, default_user: str, default_password: str,
                 definitions: Definitions | None = None) -> None:
        self._definitions = definitions
        self._configured_passwords = dict(configured.passwords())
        self._configured_passwords.setdefault(default_user, default_password)
        self._configured = configured
        self._users: dict[str, User] = {}
        self._permissions: dict[tuple[str, str], Permission] = {}
        self._scram: dict[tuple[str, str], ScramCredential] = {}
        self._topic_permissions: dict[tuple[str, str, str], TopicPermission] = {}
        if definitions is not None:
            for name, record in definitions.items(USERS):
                if isinstance(record, dict) and record.get("hashing") == HASHING:
                    self._users[str(name)] = User(str(name), record["password_hash"],
                                                  tuple(record.get("tags", ())))
            for key, record in definitions.items(PERMISSIONS):
                user, vhost = key  # type: ignore[misc]
                self._permissions[(user, vhost)] = Permission(**record)
            for key, record in definitions.items(TOPIC_PERMISSIONS):
                user, vhost, exchange = key  # type: ignore[misc]
                self._topic_permissions[(user, vhost, exchange)] = TopicPermission(**record)
            for key, record in definitions.items(SCRAM_CREDENTIALS):
                user, mechanism = key  # type: ignore[misc]
                self._scram[(user, mechanism)] = ScramCredential(
                    record["salt"], record["iterations"], record["stored_key"],
                    record["server_key"])

    # -- reading -------------------------------------------------------------------------

    def get(self, name: str) -> User | None:
        found = self._users.get(name)
        if found is not None:
            return found
        if name in self._configured_passwords:
            return User(name, "", (ADMINISTRATOR,), configured=True)
        return None

    def names(self) -> list[str]:
        return list(dict.fromkeys([*self._configured_passwords, *self._users]))

    def users(self) -> list[User]:
        return [u for u in (self.get(n) for n in self.names()) if u is not None]

    def check_password(self, name: str, password: str) -> bool:
        user = self._users.get(name)
        if user is not None:
            return check_hash(user.password_hash, password)
        expected = self._configured_passwords.get(name)
        # Compared even for unknown users, so timing does not say which names exist.
        ok = hmac.compare_digest((expected or "\0").encode(), password.encode())
        return expected is not None and ok

    def check_runtime_password(self, name: str, password: str) -> bool:
        """Only users created at run time (Kafka's PLAIN checks auth.users itself)."""
        user = self._users.get(name)
        return user is not None and check_hash(user.password_hash, password)

    def scram(self, name: str, mechanism: str) -> ScramCredential | None:
        """The credential a SCRAM login checks: one stored here, else (for a name with
        no run-time user, which would replace it) one derived from ``auth.users``."""
        found = self._scram.get((name, mechanism))
        if found is not None or name in self._users:
            return found
        return self._configured.scram(name, mechanism)

    def scram_credentials(self) -> dict[str, dict[str, ScramCredential]]:
        """The stored credentials by user and mechanism (configured users' are derived
        on demand and not listed, as Kafka lists only what it stores)."""
        out: dict[str, dict[str, ScramCredential]] = {}
        for (name, mechanism), credential in self._scram.items():
            out.setdefault(name, {})[mechanism] = credential
        return out

    def permission(self, user: str, vhost: str) -> Permission | None:
        """None: no access to the vhost. Configured users may do anything anywhere."""
        found = self.get(user)
        if found is None:
            return None
        if found.configured:
            return FULL
        return self._permissions.get((user, vhost))

    def topic_permission(self, user: str, vhost: str, exchange: str
                         ) -> TopicPermission | None:
        """None: no topic permission for that exchange, so every routing key is allowed."""
        return self._topic_permissions.get((user, vhost, exchange))

    def topic_permissions(self) -> list[tuple[str, str, str, TopicPermission]]:
        return [(u, v, e, p) for (u, v, e), p in self._topic_permissions.items()]

    def permissions(self) -> list[tuple[str, str, Permission]]:
        listed = [(u, v, p) for (u, v), p in self._permissions.items()]
        return listed

    # -- changing ------------------------------------------------------------------------

    def put_user(self, name: str, *, password: str | None = None,
                 password_hash: str | None = None, tags: tuple[str, ...] = ()) -> User:
        if not name:
            raise InvalidUser("a user needs a name")
        if password is not None:
            password_hash = hash_password(password)
        elif password_hash is None:
            raise InvalidUser("a user needs a password or a password_hash")
        elif password_hash and len(_decoded(password_hash)) != 36:
            raise InvalidUser("password_hash is not a rabbit_password_hashing_sha256 hash")
        user = User(name, password_hash, tuple(tags))
        self._users[name] = user
        if self._definitions is not None:
            self._definitions.put(USERS, name, {"password_hash": password_hash,
                                                "hashing": HASHING, "tags": list(tags)})
        # Credentials from an earlier password would outlive a change made by hash.
        for mechanism, hash_name in SCRAM_HASHES.items():
            if password is not None:
                self.set_scram(name, mechanism,
                               derive_scram(password, hash_name, iterations=SCRAM_ITERATIONS))
            else:
                self.delete_scram(name, mechanism)
        return user

    def delete_user(self, name: str) -> bool:
        if self._users.pop(name, None) is None:
            return False
        if self._definitions is not None:
            self._definitions.delete(USERS, name)
        for key in [k for k in self._permissions if k[0] == name]:
            self.clear_permission(*key)
        for mechanism in SCRAM_HASHES:
            self.delete_scram(name, mechanism)
        for user, vhost, exchange in [k for k in self._topic_permissions if k[0] == name]:
            self.clear_topic_permission(user, vhost, exchange)
        return True

    def set_topic_permission(self, user: str, vhost: str, exchange: str, write: str,
                             read: str) -> TopicPermission:
        permission = TopicPermission(write, read)
        self._topic_permissions[(user, vhost, exchange)] = permission
        if self._definitions is not None:
            self._definitions.put(TOPIC_PERMISSIONS, (user, vhost, exchange),
                                  permission.as_dict())
        return permission

    def clear_topic_permission(self, user: str, vhost: str, exchange: str) -> bool:
        if self._topic_permissions.pop((user, vhost, exchange), None) is None:
            return False
        if self._definitions is not None:
            self._definitions.delete(TOPIC_PERMISSIONS, (user, vhost, exchange))
        return True

    def set_scram(self, name: str, mechanism: str, credential: ScramCredential) -> None:
        self._scram[(name, mechanism)] = credential
        if self._definitions is not None:
            self._definitions.put(SCRAM_CREDENTIALS, (name, mechanism), {
                "salt": credential.salt, "iterations": credential.iterations,
                "stored_key": credential.stored_key, "server_key": credential.server_key})

    def delete_scram(self, name: str, mechanism: str) -> bool:
        if self._scram.pop((name, mechanism), None) is None:
            return False
        if self._definitions is not None:
            self._definitions.delete(SCRAM_CREDENTIALS, (name, mechanism))
        return True

    def set_permission(self, user: str, vhost: str, configure: str, write: str,
                       read: str) -> Permission:
        permission = Permission(configure, write, read)
        self._permissions[(user, vhost)] = permission
        if self._definitions is not None:
            self._definitions.put(PERMISSIONS, (user, vhost), permission.as_dict())
        return permission

    def clear_permission(self, user: str, vhost: str) -> bool:
        if self._permissions.pop((user, vhost), None) is None:
            return False
        if self._definitions is not None:
            self._definitions.delete(PERMISSIONS, (user, vhost))
        return True


    def clear_vhost(self, vhost: str) -> None:
        """A deleted vhost takes every permission (and topic permission) on it along."""
        for user, name in [k for k in self._permissions if k[1] == vhost]:
            self.clear_permission(user, name)
        for user, name, exchange in [k for k in self._topic_permissions if k[1] == vhost]:
            self.clear_topic_permission(user, name, exchange)


def _decoded(password_hash: str) -> bytes:
    try:
        return base64.b64decode(password_hash, validate=True)
    except (binascii.Error, ValueError):
        return b""


FULL = Permission(".*", ".*", ".*")


def user_json(user: User) -> dict[str, Any]:
    """A user as RabbitMQ's management API shows it."""
    return {"name": user.name, "tags": list(user.tags), "limits": {},
            "hashing_algorithm": HASHING, "password_hash": user.password_hash}
