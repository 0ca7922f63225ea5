"""Kafka's ACLs and the authorizer that applies them, as Kafka 3.7's authorizers do.

An ACL binds a resource pattern (resource type; a name, LITERAL or PREFIXED; the
literal name ``*`` matches every resource of its type) to an entry: a principal
(``User:alice``, or ``User:*`` for everyone), a host (``*`` or an address), an operation
and ALLOW or DENY. Deciding whether principal P on host H may do operation O to
resource R:

1. a super user (``kafka.super_users``) may do anything;
2. the ACLs whose pattern matches R are gathered; if there are none at all, the answer
   is ``kafka.allow_everyone_if_no_acl_found`` (``allow.everyone.if.no.acl.found``);
3. a DENY entry for P (or ``User:*``) and H (or ``*``) whose operation is O or ALL
   refuses: deny wins over any allow;
4. an ALLOW entry for P and H whose operation is O or ALL, or one that implies O,
   permits: READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies
   DESCRIBE_CONFIGS;
5. anything else is refused.

The numbers of the enums are Kafka's wire codes (``AclOperation``, ``ResourceType``,
``PatternType``, ``AclPermissionType`` in Kafka's clients), which the definitions store
keeps too. This module knows no wire format; the APIs under
``portask/protocols/kafka/apis/`` turn refusals into Kafka's error codes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portask.broker.definitions import Definitions

# The definitions store namespace holding every ACL binding (key: the binding's fields).
KAFKA_ACLS = "kafka_acls"
CLUSTER_NAME = "kafka-cluster"  # the only name a CLUSTER resource may have
WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class Permission(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


# An ALLOW of the key also allows these (Kafka's AclEntry.supportedOperations rules).
_IMPLIED_BY: dict[Operation, frozenset[Operation]] = {
    Operation.DESCRIBE: frozenset((Operation.READ, Operation.WRITE, Operation.DELETE,
                                   Operation.ALTER)),
    Operation.DESCRIBE_CONFIGS: frozenset((Operation.ALTER_CONFIGS,)),
}


class InvalidAcl(ValueError):
    """An ACL that cannot be created; the message is Kafka's explanation."""


@dataclass(frozen=True, slots=True)
class AclBinding:
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: Operation
    permission: Permission

    def key(self) -> tuple[int, str, int, str, str, int, int]:
        return (int(self.resource_type), self.resource_name, int(self.pattern_type),
                self.principal, self.host, int(self.operation), int(self.permission))

    @classmethod
    def from_key(cls, key: tuple[int, str, int, str, str, int, int]) -> AclBinding:
        rt, name, pt, principal, host, op, perm = key
        return cls(ResourceType(rt), name, PatternType(pt), principal, host, Operation(op),
                   Permission(perm))

    def validate(self) -> None:
        """Kafka's checks of a new ACL (AclControlManager.validateNewAcl)."""
        if self.resource_type in (ResourceType.ANY, ResourceType.UNKNOWN):
            raise InvalidAcl(f"Invalid resourceType {self.resource_type.name}")
        if self.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
            raise InvalidAcl(f"Invalid patternType {self.pattern_type.name}")
        if self.operation in (Operation.ANY, Operation.UNKNOWN):
            raise InvalidAcl(f"Invalid operation {self.operation.name}")
        if self.permission in (Permission.ANY, Permission.UNKNOWN):
            raise InvalidAcl(f"Invalid permissionType {self.permission.name}")
        if not self.resource_name:
            raise InvalidAcl("Resource name should not be empty")
        if self.resource_type == ResourceType.CLUSTER and (
            self.resource_name != CLUSTER_NAME or self.pattern_type != PatternType.LITERAL
        ):
            raise InvalidAcl("The only valid name for the CLUSTER resource is kafka-cluster")
        kind, sep, name = self.principal.partition(":")
        if not sep or not kind or not name:
            raise InvalidAcl(f"Could not parse principal from `{self.principal}` (no colon "
                             "is found separating principal type from principal name)")
        if not self.host:
            raise InvalidAcl("Invalid host: the host must not be empty (use * for any)")


@dataclass(frozen=True, slots=True)
class AclFilter:
    """Kafka's AclBindingFilter: ANY and None match everything; MATCH matches the
    patterns that apply to a literal name (itself, ``*``, and prefixes of it)."""

    resource_type: ResourceType = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: Operation = Operation.ANY
    permission: Permission = Permission.ANY

    def matches(self, acl: AclBinding) -> bool:
        if self.resource_type != ResourceType.ANY and acl.resource_type != self.resource_type:
            return False
        if not self._pattern_matches(acl):
            return False
        if self.principal is not None and acl.principal != self.principal:
            return False
        if self.host is not None and acl.host != self.host:
            return False
        if self.operation != Operation.ANY and acl.operation != self.operation:
            return False
        return self.permission == Permission.ANY or acl.permission == self.permission

    def _pattern_matches(self, acl: AclBinding) -> bool:
        name, pattern = self.resource_name, self.pattern_type
        if pattern == PatternType.MATCH:
            if name is None:
                return True
            if acl.pattern_type == PatternType.LITERAL:
                return acl.resource_name in (name, WILDCARD)
            return acl.pattern_type == PatternType.PREFIXED and name.startswith(
                acl.resource_name)
        if pattern != PatternType.ANY and acl.pattern_type != pattern:
            return False
        return name is None or acl.resource_name == name

    def validate(self) -> None:
        unknown = (self.resource_type == ResourceType.UNKNOWN
                   or self.pattern_type == PatternType.UNKNOWN
                   or self.operation == Operation.UNKNOWN
                   or self.permission == Permission.UNKNOWN)
        if unknown:
            raise InvalidAcl("Filter contains UNKNOWN elements")


class Acls:
    """Every ACL binding, durable in the definitions store, indexed for the authorizer
    by resource type: literal names in a dict, prefixed patterns in a list."""

    def __init__(self, definitions: Definitions | None = None) -> None:
        self._definitions = definitions
        self._bindings: set[AclBinding] = set()
        self._literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self._prefixed: dict[ResourceType, list[AclBinding]] = {}
        if definitions is not None:
            for key, _ in definitions.items(KAFKA_ACLS):
                self._index(AclBinding.from_key(key))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._bindings)

    def __iter__(self) -> Iterator[AclBinding]:
        return iter(sorted(self._bindings, key=AclBinding.key))

    def create(self, acl: AclBinding) -> None:
        acl.validate()
        if acl in self._bindings:
            return  # creating an existing ACL succeeds and changes nothing, as in Kafka
        if self._definitions is not None:
            self._definitions.put(KAFKA_ACLS, acl.key(), True)
        self._index(acl)

    def describe(self, flt: AclFilter) -> list[AclBinding]:
        return [acl for acl in self if flt.matches(acl)]

    def delete(self, flt: AclFilter) -> list[AclBinding]:
        gone = self.describe(flt)
        for acl in gone:
            if self._definitions is not None:
                self._definitions.delete(KAFKA_ACLS, acl.key())
            self._bindings.discard(acl)
            if acl.pattern_type == PatternType.LITERAL:
                self._literal[(acl.resource_type, acl.resource_name)].remove(acl)
            else:
                self._prefixed[acl.resource_type].remove(acl)
        return gone

    def _index(self, acl: AclBinding) -> None:
        self._bindings.add(acl)
        if acl.pattern_type == PatternType.LITERAL:
            self._literal.setdefault((acl.resource_type, acl.resource_name), []).append(acl)
        else:
            self._prefixed.setdefault(acl.resource_type, []).append(acl)

    def matching(self, resource_type: ResourceType, name: str) -> list[AclBinding]:
        """The ACLs that apply to one resource: its literal name, ``*``, and prefixes."""
        found = list(self._literal.get((resource_type, name), ()))
        if name != WILDCARD:
            found.extend(self._literal.get((resource_type, WILDCARD), ()))
        found.extend(acl for acl in self._prefixed.get(resource_type, ())
                     if name.startswith(acl.resource_name))
        return found


class Authorizer:
    """Kafka's authorize(): see the module docstring for the rules, in order."""

    def __init__(self, acls: Acls, super_users: Iterable[str] = (),
                 allow_if_no_acl: bool = False) -> None:
        self.acls = acls
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl

    def authorize(self, principal: str, host: str, operation: Operation,
                  resource_type: ResourceType, name: str) -> bool:
        if principal in self.super_users:
            return True
        acls = self.acls.matching(resource_type, name)
        if not acls:
            return self.allow_if_no_acl
        implied_by = _IMPLIED_BY.get(operation, frozenset())
        allowed = False
        for acl in acls:
            if acl.principal != principal and acl.principal != WILDCARD_PRINCIPAL:
                continue
            if acl.host != WILDCARD and acl.host != host:
                continue
            if acl.permission == Permission.DENY:
                if acl.operation in (Operation.ALL, operation):
                    return False
            elif acl.operation in (Operation.ALL, operation) or acl.operation in implied_by:
                allowed = True
        return allowed

    def authorize_any(self, principal: str, host: str, operation: Operation,
                      resource_type: ResourceType) -> bool:
        """Whether the principal may do ``operation`` to at least one resource of the
        type (Kafka's authorizeByResourceType, used by InitProducerId without a
        transactional id): an ALLOW for it that no DENY of the same pattern cancels."""
        if principal in self.super_users:
            return True
        denied: set[tuple[str, PatternType]] = set()
        candidates: list[AclBinding] = []
        for acl in self.acls:
            if acl.resource_type != resource_type:
                continue
            if acl.principal not in (principal, WILDCARD_PRINCIPAL):
                continue
            if acl.host not in (WILDCARD, host):
                continue
            if acl.permission == Permission.DENY and acl.operation in (Operation.ALL,
                                                                       operation):
                if acl.resource_name == WILDCARD and acl.pattern_type == PatternType.LITERAL:
                    return False
                denied.add((acl.resource_name, acl.pattern_type))
            elif acl.permission == Permission.ALLOW and acl.operation in (Operation.ALL,
                                                                          operation):
                candidates.append(acl)
        return any((acl.resource_name, acl.pattern_type) not in denied for acl in candidates) \
            or (self.allow_if_no_acl and not any(True for _ in self.acls))
