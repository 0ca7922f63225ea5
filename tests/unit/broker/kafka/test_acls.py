from __future__ import annotations

from pathlib import Path

import pytest

from portask.broker.definitions import Definitions
from portask.broker.kafka.acls import (
    AclBinding,
    AclFilter,
    Acls,
    Authorizer,
    InvalidAcl,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)

TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
LITERAL, PREFIXED = PatternType.LITERAL, PatternType.PREFIXED
ALLOW, DENY = Permission.ALLOW, Permission.DENY


def acl(name: str, op: Operation, perm: Permission = ALLOW, principal: str = "User:alice",
        pattern: PatternType = LITERAL, rtype: ResourceType = TOPIC,
        host: str = "*") -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def authorizer(*bindings: AclBinding, **kw: object) -> Authorizer:
    acls = Acls()
    for b in bindings:
        acls.create(b)
    return Authorizer(acls, **kw)  # type: ignore[arg-type]


def test_literal_allow_permits_only_that_topic_operation_and_principal() -> None:
    a = authorizer(acl("orders", Operation.WRITE))
    assert a.authorize("User:alice", "10.0.0.1", Operation.WRITE, TOPIC, "orders")
    assert not a.authorize("User:alice", "10.0.0.1", Operation.READ, TOPIC, "orders")
    assert not a.authorize("User:bob", "10.0.0.1", Operation.WRITE, TOPIC, "orders")
    # No ACL at all on this topic: refused unless allow_everyone_if_no_acl_found.
    assert not a.authorize("User:alice", "10.0.0.1", Operation.WRITE, TOPIC, "other")


def test_read_write_delete_alter_imply_describe_and_alter_configs_implies_describe_configs(
) -> None:
    for op in (Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER):
        assert authorizer(acl("t", op)).authorize("User:alice", "h", Operation.DESCRIBE,
                                                   TOPIC, "t")
    a = authorizer(acl("t", Operation.ALTER_CONFIGS))
    assert a.authorize("User:alice", "h", Operation.DESCRIBE_CONFIGS, TOPIC, "t")
    assert not authorizer(acl("t", Operation.CREATE)).authorize(
        "User:alice", "h", Operation.DESCRIBE, TOPIC, "t")


def test_deny_wins_over_allow_and_all_covers_every_operation() -> None:
    a = authorizer(acl("t", Operation.ALL), acl("t", Operation.WRITE, DENY))
    assert a.authorize("User:alice", "h", Operation.READ, TOPIC, "t")
    assert not a.authorize("User:alice", "h", Operation.WRITE, TOPIC, "t")
    # A deny of READ does not deny DESCRIBE, which READ would only imply when allowed.
    b = authorizer(acl("t", Operation.ALL), acl("t", Operation.READ, DENY))
    assert b.authorize("User:alice", "h", Operation.DESCRIBE, TOPIC, "t")


def test_prefixed_and_wildcard_patterns_and_principals() -> None:
    a = authorizer(acl("app-", Operation.READ, pattern=PREFIXED),
                   acl("*", Operation.DESCRIBE, principal="User:*"),
                   acl("app-secret", Operation.READ, DENY, principal="User:*"))
    assert a.authorize("User:alice", "h", Operation.READ, TOPIC, "app-events")
    assert not a.authorize("User:alice", "h", Operation.READ, TOPIC, "ap")
    assert not a.authorize("User:alice", "h", Operation.READ, TOPIC, "app-secret")
    assert a.authorize("User:bob", "h", Operation.DESCRIBE, TOPIC, "anything")


def test_host_must_match_unless_star() -> None:
    a = authorizer(acl("t", Operation.READ, host="10.0.0.1"))
    assert a.authorize("User:alice", "10.0.0.1", Operation.READ, TOPIC, "t")
    assert not a.authorize("User:alice", "10.0.0.2", Operation.READ, TOPIC, "t")


def test_super_users_and_allow_everyone_if_no_acl_found() -> None:
    a = authorizer(acl("t", Operation.READ, DENY, principal="User:*"),
                   super_users={"User:admin"}, allow_if_no_acl=True)
    assert a.authorize("User:admin", "h", Operation.READ, TOPIC, "t")
    assert not a.authorize("User:alice", "h", Operation.READ, TOPIC, "t")
    assert a.authorize("User:alice", "h", Operation.READ, TOPIC, "no-acls-here")
    assert a.authorize("User:alice", "h", Operation.READ, GROUP, "g")


def test_authorize_any_finds_an_allow_not_cancelled_by_a_deny() -> None:
    a = authorizer(acl("t", Operation.WRITE))
    assert a.authorize_any("User:alice", "h", Operation.WRITE, TOPIC)
    assert not a.authorize_any("User:bob", "h", Operation.WRITE, TOPIC)
    b = authorizer(acl("t", Operation.WRITE), acl("t", Operation.WRITE, DENY))
    assert not b.authorize_any("User:alice", "h", Operation.WRITE, TOPIC)


@pytest.mark.parametrize(("binding", "message"), [
    (acl("t", Operation.ANY), "Invalid operation ANY"),
    (acl("t", Operation.READ, Permission.ANY), "Invalid permissionType ANY"),
    (acl("t", Operation.READ, pattern=PatternType.MATCH), "Invalid patternType MATCH"),
    (acl("t", Operation.READ, rtype=ResourceType.ANY), "Invalid resourceType ANY"),
    (acl("", Operation.READ), "Resource name should not be empty"),
    (acl("c", Operation.ALTER, rtype=CLUSTER), "only valid name for the CLUSTER resource"),
    (acl("t", Operation.READ, principal="alice"), "Could not parse principal"),
])
def test_invalid_acls_are_refused_with_kafkas_reason(binding: AclBinding, message: str) -> None:
    with pytest.raises(InvalidAcl, match=message):
        Acls().create(binding)


def test_filters_describe_and_delete_with_match_semantics() -> None:
    acls = Acls()
    for b in (acl("app-", Operation.READ, pattern=PREFIXED), acl("app-1", Operation.WRITE),
              acl("*", Operation.DESCRIBE), acl("g", Operation.READ, rtype=GROUP)):
        acls.create(b)
    match = AclFilter(ResourceType.TOPIC, "app-1", PatternType.MATCH)
    assert {b.resource_name for b in acls.describe(match)} == {"app-", "app-1", "*"}
    assert [b.resource_name for b in acls.describe(AclFilter(pattern_type=PREFIXED))] == [
        "app-"]
    assert len(acls.describe(AclFilter())) == 4
    gone = acls.delete(AclFilter(ResourceType.TOPIC, operation=Operation.WRITE))
    assert [b.resource_name for b in gone] == ["app-1"]
    assert len(acls) == 3
    assert not Authorizer(acls).authorize("User:alice", "h", Operation.WRITE, TOPIC, "app-1")


def test_acls_survive_a_restart(tmp_path: Path) -> None:
    definitions = Definitions(tmp_path).open()
    acls = Acls(definitions)
    acls.create(acl("t", Operation.READ))
    acls.create(acl("t", Operation.READ))  # the same ACL twice is one ACL
    acls.create(acl("x", Operation.WRITE))
    acls.delete(AclFilter(resource_name="x"))
    definitions.close()
    reopened = Definitions(tmp_path).open()
    try:
        assert list(Acls(reopened)) == [acl("t", Operation.READ)]
    finally:
        reopened.close()
