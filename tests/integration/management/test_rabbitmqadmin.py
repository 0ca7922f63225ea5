"""Debian's rabbitmqadmin (3.10.8), with its defaults, against Portask's management API.

CI installs it (``.ci/run``: the rabbitmq-server package, never started). Elsewhere
the test is skipped when the tool is missing, but not under CI, where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.broker_process import BrokerProcess

RABBITMQADMIN = shutil.which("rabbitmqadmin")

pytestmark = pytest.mark.skipif(
    RABBITMQADMIN is None and not os.environ.get("CI"),
    reason="rabbitmqadmin is not installed (apt-get install rabbitmq-server)",
)


def _admin(broker: BrokerProcess, *args: str) -> str:
    assert RABBITMQADMIN is not None, "CI must install rabbitmqadmin"
    done = subprocess.run([RABBITMQADMIN, "-P", str(broker.management_port), *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def _rows(broker: BrokerProcess, *args: str) -> list[dict[str, object]]:
    return json.loads(_admin(broker, "-f", "raw_json", *args))  # type: ignore[no-any-return]


def test_rabbitmqadmin_lists_declares_publishes_gets_purges_and_exports(
        mgmt_broker: BrokerProcess, tmp_path: Path) -> None:
    q, x = f"admin-q-{uuid.uuid4().hex[:6]}", f"admin-x-{uuid.uuid4().hex[:6]}"
    assert "queue declared" in _admin(mgmt_broker, "declare", "queue", f"name={q}")
    assert "exchange declared" in _admin(mgmt_broker, "declare", "exchange", f"name={x}",
                                         "type=topic")
    assert "binding declared" in _admin(mgmt_broker, "declare", "binding", f"source={x}",
                                        f"destination={q}", "routing_key=a.*")
    assert "Message published" in _admin(mgmt_broker, "publish", f"exchange={x}",
                                         "routing_key=a.b", "payload=hello")
    assert "NOT routed" in _admin(mgmt_broker, "publish", f"exchange={x}",
                                  "routing_key=zzz", "payload=lost")
    _admin(mgmt_broker, "publish", "exchange=amq.default", f"routing_key={q}",
           "payload=second")

    queues = {r["name"]: r for r in _rows(mgmt_broker, "list", "queues")}
    assert queues[q]["messages"] == 2 and queues[q]["durable"] is True
    table = _admin(mgmt_broker, "list", "queues", "name", "messages")
    assert any(q in line and "| 2 " in line for line in table.splitlines())
    assert {"name": x, "type": "topic"}.items() <= {
        r["name"]: r for r in _rows(mgmt_broker, "list", "exchanges")}[x].items()
    bindings = _rows(mgmt_broker, "list", "bindings")
    assert any(b["source"] == x and b["destination"] == q and b["routing_key"] == "a.*"
               for b in bindings)
    assert _rows(mgmt_broker, "show", "overview")[0]["rabbitmq_version"]
    for kind in ("connections", "channels", "consumers", "vhosts", "users", "permissions",
                 "nodes"):
        assert isinstance(_rows(mgmt_broker, "list", kind), list), kind

    got = _rows(mgmt_broker, "get", f"queue={q}", "count=2", "ackmode=ack_requeue_true")
    assert [m["payload"] for m in got] == ["hello", "second"]
    assert [m["routing_key"] for m in got] == ["a.b", q]
    assert {r["name"]: r for r in _rows(mgmt_broker, "list", "queues")}[q]["messages"] == 2

    assert "queue purged" in _admin(mgmt_broker, "purge", "queue", f"name={q}")
    assert {r["name"]: r for r in _rows(mgmt_broker, "list", "queues")}[q]["messages"] == 0

    exported = tmp_path / "defs.json"
    _admin(mgmt_broker, "export", str(exported))
    defs = json.loads(exported.read_text())
    assert {"name": q, "vhost": "/", "durable": True, "auto_delete": False,
            "arguments": {}} in defs["queues"]
    assert any(e["name"] == x and e["type"] == "topic" for e in defs["exchanges"])
    assert {"source": x, "vhost": "/", "destination": q, "destination_type": "queue",
            "routing_key": "a.*", "arguments": {}} in defs["bindings"]
    assert {"name": "/"} .items() <= defs["vhosts"][0].items()
    assert any(u["name"] == "guest" for u in defs["users"])

    assert "binding deleted" in _admin(mgmt_broker, "delete", "binding", f"source={x}",
                                       "destination_type=queue", f"destination={q}",
                                       "properties_key=a.*")
    assert "queue deleted" in _admin(mgmt_broker, "delete", "queue", f"name={q}")
    assert "exchange deleted" in _admin(mgmt_broker, "delete", "exchange", f"name={x}")
    assert q not in {r["name"] for r in _rows(mgmt_broker, "list", "queues")}


def test_rabbitmqadmin_reports_a_wrong_password(mgmt_broker: BrokerProcess) -> None:
    assert RABBITMQADMIN is not None
    done = subprocess.run([RABBITMQADMIN, "-P", str(mgmt_broker.management_port),
                           "-p", "wrong", "list", "queues"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "Access refused" in done.stdout + done.stderr
