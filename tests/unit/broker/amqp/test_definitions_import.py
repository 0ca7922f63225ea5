"""The importer as other code calls it (the control API's seed): a document, the vhosts
and the user store, no HTTP in between."""

from __future__ import annotations

import pytest

from portask.broker.amqp.definitions_import import (
    MAX_ENTRIES,
    InvalidDefinitions,
    import_definitions,
)
from portask.broker.amqp.vhosts import VirtualHosts
from portask.broker.user_store import UserStore, hash_password
from portask.broker.users import Users


def _store() -> UserStore:
    return UserStore(Users(""), "guest", "guest")


def test_users_by_hash_and_by_password_log_in_and_a_password_gives_scram_keys() -> None:
    vhosts, users = VirtualHosts(["/"]), _store()
    report = import_definitions({
        "users": [{"name": "hashed", "password_hash": hash_password("one"), "tags": []},
                  {"name": "plain", "password": "two", "tags": "management,monitoring"}],
        "parameters": [{"vhost": "/", "component": "shovel", "name": "s", "value": {}}],
        "global_parameters": [{"name": "cluster_name", "value": "rabbit@prod"}],
    }, vhosts, users)
    assert users.check_password("hashed", "one") and users.check_password("plain", "two")
    assert users.get("plain").tags == ("management", "monitoring")  # type: ignore[union-attr]
    assert users.scram("plain", "SCRAM-SHA-256") is not None
    assert users.scram("hashed", "SCRAM-SHA-256") is None  # nothing to derive it from
    assert report.created == {"users": 2}
    assert [line.split(":")[0] for line in report.skipped] == [
        "global_parameters[0]", "parameters[0]"]


def test_a_vhost_import_puts_everything_in_that_vhost() -> None:
    vhosts = VirtualHosts(["/", "dev"])
    import_definitions({
        "exchanges": [{"name": "x", "vhost": "prod", "type": "fanout"}],
        "queues": [{"name": "q", "vhost": "prod", "durable": True}],
        "bindings": [{"source": "x", "vhost": "prod", "destination": "q",
                      "destination_type": "queue", "routing_key": ""}],
    }, vhosts, None, vhost="dev")
    dev = vhosts.get("dev")
    assert dev is not None and "q" in dev.queues and dev.exchanges["x"].has_binding_to(
        dev.queues["q"])
    assert vhosts.get("prod") is None


def test_sections_longer_than_the_bound_are_refused_before_anything_is_read() -> None:
    document = {"queues": [{}] * (MAX_ENTRIES + 1)}
    with pytest.raises(InvalidDefinitions, match=f"at most {MAX_ENTRIES}"):
        import_definitions(document, VirtualHosts(["/"]), _store())
