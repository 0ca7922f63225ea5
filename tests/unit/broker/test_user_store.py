from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from portask.broker.definitions import Definitions
from portask.broker.user_store import (
    FULL,
    InvalidUser,
    Permission,
    UserStore,
    check_hash,
    hash_password,
)
from portask.broker.users import SCRAM_HASHES, Users, derive_scram
from portask.protocols.scram import ScramError, ScramServer


def store(definitions: Definitions | None = None) -> UserStore:
    return UserStore(Users("alice:alice-pw"), "guest", "guest", definitions)


def test_hashes_are_rabbitmqs_sha256_format_both_ways() -> None:
    # The worked example in RabbitMQ's passwords guide: salt 908D C60A, password "test12".
    expected = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
    assert hash_password("test12", bytes.fromhex("908DC60A")) == expected
    assert check_hash(expected, "test12") and not check_hash(expected, "test13")
    assert not check_hash("not base64!", "x") and not check_hash("c2hvcnQ=", "x")


def test_configured_users_log_in_and_may_do_everything_everywhere() -> None:
    users = store()
    assert users.check_password("alice", "alice-pw") and users.check_password("guest", "guest")
    assert not users.check_password("alice", "nope") and not users.check_password("x", "")
    assert users.permission("guest", "any-vhost") is FULL
    assert users.get("alice").tags == ("administrator",)  # type: ignore[union-attr]


def test_runtime_users_have_only_the_permissions_they_are_given() -> None:
    users = store()
    users.put_user("bob", password="bob-pw", tags=("monitoring",))
    assert users.check_password("bob", "bob-pw") and not users.check_password("bob", "x")
    assert users.permission("bob", "/") is None
    users.set_permission("bob", "/", "^bob-", "", ".*")
    perm = users.permission("bob", "/")
    assert perm is not None
    assert perm.allows("configure", "bob-queue") and not perm.allows("configure", "other")
    # An empty expression is "^$": nothing but the empty name.
    assert not perm.allows("write", "amq.default") and perm.allows("write", "")
    # Unanchored, as RabbitMQ's re:run searches.
    assert Permission("queue", "", "").allows("configure", "my-queue-1")
    assert users.permission("bob", "other") is None


def test_a_runtime_user_may_be_created_from_a_hash_and_replaces_a_configured_one() -> None:
    users = store()
    users.put_user("alice", password_hash=hash_password("new-pw"), tags=())
    assert users.check_password("alice", "new-pw") and not users.check_password("alice",
                                                                                 "alice-pw")
    assert users.permission("alice", "/") is None
    with pytest.raises(InvalidUser):
        users.put_user("carol", password_hash="dG9vIHNob3J0")
    with pytest.raises(InvalidUser):
        users.set_permission("carol", "/", "(", "", "")


def test_runtime_users_and_permissions_survive_a_restart(tmp_path: Path) -> None:
    definitions = Definitions(tmp_path).open()
    users = store(definitions)
    users.put_user("bob", password="bob-pw", tags=("management",))
    users.set_permission("bob", "/", ".*", "", "^q$")
    users.put_user("gone", password="x")
    users.set_permission("gone", "/", ".*", ".*", ".*")
    assert users.delete_user("gone")
    definitions.close()
    reopened = Definitions(tmp_path).open()
    try:
        again = store(reopened)
        assert again.check_password("bob", "bob-pw")
        assert again.get("bob").tags == ("management",)  # type: ignore[union-attr]
        assert again.permission("bob", "/") == Permission(".*", "", "^q$")
        assert again.get("gone") is None and again.permissions() == [
            ("bob", "/", Permission(".*", "", "^q$"))]
    finally:
        reopened.close()


def _scram_login(users: UserStore, name: str, password: str, mechanism: str) -> bool:
    """A whole SCRAM exchange (RFC 5802) as a client computes it, against the store."""
    hash_name = SCRAM_HASHES[mechanism]
    server = ScramServer(mechanism, lambda n: users.scram(n, mechanism))
    client_first_bare = f"n={name},r=clientnonce"
    try:
        server_first = server.step(f"n,,{client_first_bare}".encode()).decode()
    except ScramError:
        return False
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(),
                                 base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(hashlib.new(hash_name, client_key).digest(), auth_message,
                            hash_name)
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature,
                                                         strict=True))).decode()
    try:
        server.step(f"{without_proof},p={proof}".encode())
    except ScramError:
        return False
    return server.done


@pytest.mark.parametrize("mechanism", list(SCRAM_HASHES))
def test_a_password_gives_scram_credentials_and_a_hash_alone_none(mechanism: str) -> None:
    users = store()
    assert _scram_login(users, "alice", "alice-pw", mechanism)  # from auth.users
    users.put_user("carol", password="carol-pw")
    assert users.scram("carol", mechanism).iterations == 4096  # type: ignore[union-attr]
    assert _scram_login(users, "carol", "carol-pw", mechanism)
    assert not _scram_login(users, "carol", "wrong", mechanism)
    # Replaced from a hash: no SCRAM (a RabbitMQ hash cannot give the salted keys)...
    users.put_user("carol", password_hash=hash_password("carol-pw"))
    assert users.scram("carol", mechanism) is None
    assert not _scram_login(users, "carol", "carol-pw", mechanism)
    # ...and a run-time user hides a configured one of its name from SCRAM too.
    users.put_user("alice", password_hash=hash_password("alice-pw"))
    assert not _scram_login(users, "alice", "alice-pw", mechanism)


def test_scram_credentials_survive_a_restart_and_go_with_their_user(tmp_path: Path) -> None:
    definitions = Definitions(tmp_path).open()
    users = store(definitions)
    users.put_user("bob", password="bob-pw")
    users.set_scram("kafka-only", "SCRAM-SHA-512",
                    derive_scram("k-pw", "sha512", iterations=8192))
    users.put_user("gone", password="x")
    assert users.delete_user("gone")
    definitions.close()
    reopened = Definitions(tmp_path).open()
    try:
        again = store(reopened)
        assert _scram_login(again, "bob", "bob-pw", "SCRAM-SHA-256")
        assert _scram_login(again, "kafka-only", "k-pw", "SCRAM-SHA-512")
        assert {n: sorted(m) for n, m in again.scram_credentials().items()} == {
            "bob": ["SCRAM-SHA-256", "SCRAM-SHA-512"], "kafka-only": ["SCRAM-SHA-512"]}
        assert again.delete_scram("kafka-only", "SCRAM-SHA-512")
        assert not again.delete_scram("kafka-only", "SCRAM-SHA-512")
    finally:
        reopened.close()


def test_topic_permissions_expand_the_user_and_vhost_and_go_with_the_user() -> None:
    users = store()
    users.put_user("dan", password="x")
    users.set_topic_permission("dan", "/", "amq.topic", "^{username}\\.{vhost}", "")
    found = users.topic_permission("dan", "/", "amq.topic")
    assert found is not None
    assert found.allows("write", "dan./x", "dan", "/")
    assert not found.allows("write", "eve./x", "dan", "/")
    assert found.allows("read", "", "dan", "/")  # an empty expression is ^$
    assert not found.allows("read", "anything", "dan", "/")
    assert users.topic_permission("dan", "/", "other") is None
    with pytest.raises(InvalidUser):
        users.set_topic_permission("dan", "/", "amq.topic", "(", "")
    users.delete_user("dan")
    assert users.topic_permissions() == []
