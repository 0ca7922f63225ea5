"""A client of the control API (``/_portask/`` on the HTTP listener), on urllib only:
what ``Broker``, the pytest fixtures and ``portask ctl`` call."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode


class ControlError(RuntimeError):
    """The control API refused a request: ``status`` and the answer it gave."""

    def __init__(self, status: int, answer: Any) -> None:
        message = answer.get("message") if isinstance(answer, dict) else None
        super().__init__(f"HTTP {status}: {message or answer}")
        self.status = status
        self.answer = answer


class WaitTimeout(ControlError):
    """A wait ran out of time; ``answer`` holds the state last seen."""


class ControlMethods:
    """The control API's calls, for any class with an ``http_url`` (the broker's HTTP
    listener, ``http://127.0.0.1:15673``) and a broker user's credentials."""

    http_url: str
    control_user = "guest"
    control_password = "guest"
    control_timeout = 30.0

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             query: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """One request; the decoded JSON answer, or ControlError (WaitTimeout for 408)."""
        url = f"{self.http_url.rstrip('/')}/_portask/{path}"
        given = {k: v for k, v in (query or {}).items() if v is not None}
        if given:
            url += "?" + urlencode(given)
        data = json.dumps(body).encode() if body is not None else None
        credentials = f"{self.control_user}:{self.control_password}".encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": "Basic " + base64.b64encode(credentials).decode(),
            "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request,
                                        timeout=timeout or self.control_timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                answer: Any = json.loads(raw)
            except ValueError:
                answer = raw.decode(errors="replace")
            raise (WaitTimeout if err.code == 408 else ControlError)(err.code, answer) from None
        return json.loads(raw) if raw else None

    # -- state -------------------------------------------------------------------------

    def reset(self, *, vhost: str | None = None, prefix: str | None = None) -> dict[str, Any]:
        """Delete topics, groups, queues, exchanges and messages (all, or one vhost's, or
        those whose names start with ``prefix``); counts of what went."""
        body = {k: v for k, v in (("vhost", vhost), ("prefix", prefix)) if v is not None}
        return self.call("POST", "reset", body)  # type: ignore[no-any-return]

    def peek_topic(self, topic: str, partition: int = 0, *, offset: int = 0,
                   count: int = 10) -> list[dict[str, Any]]:
        answer = self.call("GET", f"peek/topics/{quote(topic, safe='')}/{partition}",
                           query={"offset": offset, "count": count})
        return answer["records"]  # type: ignore[no-any-return]

    def peek_queue(self, queue: str, *, vhost: str = "/", offset: int = 0,
                   limit: int = 100, routing_key: str | None = None,
                   headers: dict[str, Any] | None = None, body: str | None = None,
                   encoding: str = "auto") -> list[dict[str, Any]]:
        """The queue's messages from position ``offset`` on, not consumed: each with
        ``payload``, ``routing_key``, ``properties``, ``redelivered``, ``position``.
        ``routing_key`` is a shell-style pattern; ``headers`` values must match as text
        (None: the header is present); ``body`` a substring."""
        header = ",".join(name if value is None else f"{name}:{value}"
                          for name, value in (headers or {}).items())
        answer = self.call("GET", f"peek/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}",
                           query={"offset": offset, "limit": limit, "routing_key": routing_key,
                                  "header": header or None, "body": body,
                                  "encoding": encoding})
        return answer["messages"]  # type: ignore[no-any-return]

    def seed(self, topology: dict[str, Any] | str | Path) -> dict[str, Any]:
        """Declare a topology in one call: a dict, YAML or JSON text, or a file holding
        it (the format: README, "Seed, snapshots and restore"); counts of what was made."""
        if isinstance(topology, Path) or (isinstance(topology, str)
                                          and _names_a_file(topology)):
            topology = Path(topology).read_text()
        if isinstance(topology, str):
            import yaml  # JSON is YAML too

            topology = yaml.safe_load(topology)
        return self.call("POST", "seed", topology)  # type: ignore[arg-type,no-any-return]

    def snapshot(self, name: str) -> dict[str, Any]:
        """Take a snapshot of everything users created, under ``name``."""
        return self.call("POST", f"snapshots/{quote(name, safe='')}")  # type: ignore[no-any-return]

    def restore(self, name: str) -> dict[str, Any]:
        """Reset, then bring back exactly what snapshot ``name`` holds."""
        return self.call(  # type: ignore[no-any-return]
            "POST", f"snapshots/{quote(name, safe='')}/restore")

    def snapshots(self) -> list[dict[str, Any]]:
        return self.call("GET", "snapshots")  # type: ignore[no-any-return]

    def delete_snapshot(self, name: str) -> None:
        self.call("DELETE", f"snapshots/{quote(name, safe='')}")

    def create_vhost(self, name: str) -> bool:
        """Create an AMQP vhost; False if it existed already."""
        return bool(self.call("PUT", f"vhosts/{quote(name, safe='')}")["created"])

    def delete_vhost(self, name: str) -> None:
        """Delete a vhost with its exchanges, queues and messages."""
        self.call("DELETE", f"vhosts/{quote(name, safe='')}")

    # -- waits -------------------------------------------------------------------------

    def _wait(self, path: str, query: dict[str, Any], timeout_ms: int) -> dict[str, Any]:
        answer = self.call("GET", path, query={**query, "timeout_ms": timeout_ms},
                           timeout=timeout_ms / 1000 + self.control_timeout)
        return answer  # type: ignore[no-any-return]

    def wait_queue(self, queue: str, *, vhost: str = "/", messages: int | None = None,
                   consumers: int | None = None, timeout_ms: int = 5000) -> dict[str, Any]:
        return self._wait(f"wait/queue/{quote(vhost, safe='')}/{quote(queue, safe='')}",
                          {"messages": messages, "consumers": consumers}, timeout_ms)

    def wait_topic(self, topic: str, *, records: int = 1,
                   timeout_ms: int = 5000) -> dict[str, Any]:
        return self._wait(f"wait/topic/{quote(topic, safe='')}", {"records": records},
                          timeout_ms)

    def wait_group(self, group: str, *, state: str | None = "Stable",
                   members: int | None = None, timeout_ms: int = 10000) -> dict[str, Any]:
        return self._wait(f"wait/group/{quote(group, safe='')}",
                          {"state": state, "members": members}, timeout_ms)

    # -- faults ------------------------------------------------------------------------

    def add_fault(self, *, protocol: str = "kafka", action: str, api: str | None = None,
                  topic: str | None = None, error: str | None = None, delay_ms: int = 0,
                  times: int | None = None, probability: float | None = None,
                  method: str | None = None, queue: str | None = None,
                  exchange: str | None = None, code: int | None = None,
                  text: str | None = None, min_version: int | None = None,
                  max_version: int | None = None, throttle_ms: int | None = None,
                  routing_key: str | None = None, client: str | None = None,
                  user: str | None = None, duration_ms: int | None = None,
                  partition: int | None = None) -> dict[str, Any]:
        """Install a fault rule; the rule as the broker keeps it (with its ``id``)."""
        rule = {"protocol": protocol, "action": action, "api": api, "topic": topic,
                "min_version": min_version, "max_version": max_version,
                "throttle_ms": throttle_ms, "routing_key": routing_key,
                "error": error, "delay_ms": delay_ms or None, "times": times,
                "probability": probability, "method": method, "queue": queue,
                "exchange": exchange, "code": code, "text": text, "client": client,
                "user": user, "duration_ms": duration_ms, "partition": partition}
        return self.call("POST", "faults",  # type: ignore[no-any-return]
                         {k: v for k, v in rule.items() if v is not None})

    def faults(self) -> list[dict[str, Any]]:
        return self.call("GET", "faults")  # type: ignore[no-any-return]

    def clear_faults(self) -> int:
        return int(self.call("DELETE", "faults")["cleared"])

    def raise_alarm(self, resource: str = "memory") -> list[str]:
        return self.call("POST", f"alarms/{resource}")["alarms"]  # type: ignore[no-any-return]

    def clear_alarm(self, resource: str = "memory") -> list[str]:
        return self.call("DELETE", f"alarms/{resource}")["alarms"]  # type: ignore[no-any-return]

    def close_connections(self) -> int:
        return int(self.call("POST", "connections/close")["closed"])

    def refuse_connections(self, listener: str, duration_ms: int, *,
                           close_existing: bool = False) -> int:
        """Reset new connections to the ``kafka`` or ``amqp`` listeners for
        ``duration_ms`` (with ``close_existing``, close the open ones too: the broker
        is down as clients see it); the connections closed."""
        answer = self.call("POST", f"listeners/{listener}/refuse", {
            "duration_ms": duration_ms, "close_existing": close_existing})
        return int(answer["closed"])

    def fail_syncs(self, count: int = 1) -> int:
        """Make the next ``count`` fdatasyncs of the broker's logs fail (0: none)."""
        if count:
            return int(self.call("POST", "storage/fail-syncs", {"count": count})[
                "failing_syncs"])
        return int(self.call("DELETE", "storage/fail-syncs")["failing_syncs"])

    def accept_connections(self, listener: str) -> None:
        """End a refusal early."""
        self.call("DELETE", f"listeners/{listener}/refuse")

    # -- request log -------------------------------------------------------------------

    def record_requests(self, enabled: bool = True, size: int | None = None) -> None:
        body: dict[str, Any] = {"enabled": enabled}
        if size is not None:
            body["size"] = size
        self.call("PUT", "requests", body)

    def requests(self, *, protocol: str | None = None, api: str | None = None,
                 topic: str | None = None, client_id: str | None = None,
                 limit: int | None = None, connection: str | None = None,
                 queue: str | None = None, exchange: str | None = None,
                 errors: bool = False, since_ms: int | None = None) -> list[dict[str, Any]]:
        """The logged requests that match every filter, oldest first (``limit``: the
        last N). ``api`` is a Kafka API name ("Produce") or an AMQP method
        ("basic.publish"); ``errors`` keeps those answered with an error."""
        answer = self.call("GET", "requests", query={
            "protocol": protocol, "api": api, "topic": topic, "client_id": client_id,
            "limit": limit, "connection": connection, "queue": queue,
            "exchange": exchange, "errors": "true" if errors else None,
            "since_ms": since_ms})
        return answer["requests"]  # type: ignore[no-any-return]

    def clear_requests(self) -> int:
        return int(self.call("DELETE", "requests")["cleared"])


def _names_a_file(text: str) -> bool:
    if "\n" in text or len(text) > 1024:
        return False
    try:
        return Path(text).is_file()
    except OSError:
        return False


class ControlClient(ControlMethods):
    def __init__(self, http_url: str, user: str = "guest", password: str = "guest",
                 timeout: float = 30.0) -> None:
        self.http_url = http_url
        self.control_user = user
        self.control_password = password
        self.control_timeout = timeout
