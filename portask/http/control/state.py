"""Seed, snapshots and vhosts through the control API.

- ``POST /_portask/seed``: a topology (JSON, or YAML with ``Content-Type:
  application/yaml``) declared in one call (``broker.seed``).
- ``POST /_portask/snapshots/{name}``: take a snapshot; ``GET /_portask/snapshots``: list;
  ``POST /_portask/snapshots/{name}/restore``: reset and rebuild it;
  ``DELETE /_portask/snapshots/{name}``.
- ``PUT /_portask/vhosts/{name}``, ``DELETE``: create a vhost at run time, or delete one
  with everything in it (a test's own vhost, so tests run side by side without reset).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from portask.http.control.view import ControlError, seed
from portask.http.kafka.api import Call, KafkaApiError, invalid, not_found
from portask.http.management.api import Router, to_json
from portask.http.server import Response

if TYPE_CHECKING:
    from portask.http.control.view import ControlView

# A seed may carry messages and records: the HTTP listener's own limit applies.
MAX_SEED_BYTES = 10 << 20


def register_state(router: Router, view: ControlView) -> None:
    broker = view.broker

    def seed_topology(call: Call) -> Any:
        raw = call.request.body
        if len(raw) > MAX_SEED_BYTES:
            raise KafkaApiError(413, "body_too_large", f"at most {MAX_SEED_BYTES} bytes")
        document = _document(raw, call.request.headers.get("content-type", ""))
        try:
            result = seed(broker, document)
        except ControlError as exc:
            raise KafkaApiError(400, "invalid_seed", str(exc)) from None
        return dataclasses.asdict(result)

    def take(call: Call) -> Any:
        try:
            snapshot, took = broker.snapshots.take(_name(call))
        except ControlError as exc:
            raise invalid("name", str(exc)) from None
        return Response(201, to_json({**snapshot.describe(), "took_ms": round(took, 3)}))

    def listing(call: Call) -> Any:
        return [s.describe() for s in broker.snapshots]

    def restore(call: Call) -> Any:
        try:
            snapshot, took = broker.snapshots.restore(_name(call))
        except KeyError:
            raise not_found(f"no snapshot {_name(call)!r}") from None
        return {**snapshot.describe(), "took_ms": round(took, 3)}

    def delete(call: Call) -> Any:
        if not broker.snapshots.delete(_name(call)):
            raise not_found(f"no snapshot {_name(call)!r}")
        return {"deleted": _name(call)}

    router.add("POST", "seed", seed_topology)
    router.add("GET", "snapshots", listing)
    router.add("POST", "snapshots/{name}", take)
    router.add("DELETE", "snapshots/{name}", delete)
    router.add("POST", "snapshots/{name}/restore", restore)
    _register_vhosts(router, view)


def _register_vhosts(router: Router, view: ControlView) -> None:
    broker = view.broker

    def create_vhost(call: Call) -> Any:
        name = call.params["name"]
        amqp = broker.amqp
        if amqp is None:
            raise not_found("vhosts need the AMQP listener")
        existed = amqp.get(name) is not None
        try:
            amqp.create(name)
        except ValueError as exc:
            raise invalid("name", str(exc)) from None
        return Response(200 if existed else 201, to_json({"vhost": name,
                                                          "created": not existed}))

    def delete_vhost(call: Call) -> Any:
        name = call.params["name"]
        amqp = broker.amqp
        if amqp is None or not amqp.delete(name):
            raise not_found(f"no vhost {name!r}")
        return {"deleted": name}

    router.add("PUT", "vhosts/{name}", create_vhost)
    router.add("DELETE", "vhosts/{name}", delete_vhost)


def _name(call: Call) -> str:
    return call.params["name"]


def _document(raw: bytes, content_type: str) -> Any:
    if not raw.strip():
        raise invalid("body", "the seed is empty")
    if "yaml" in content_type:
        import yaml

        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise invalid("body", f"the body is not YAML: {exc}") from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise invalid("body", f"the body is not JSON (send YAML as application/yaml): "
                      f"{exc}") from None
