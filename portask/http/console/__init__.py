"""The web console and the APIs it reads, on the HTTP listener (``http.port``).

Built on the first request that is neither /health nor /metrics, so a broker nobody
browses never loads it. Serves:

- ``/`` and ``/console/...``: the console itself, plain HTML, CSS and JavaScript
  modules shipped in the package (``static/``): no CDN, no build step.
- ``/api/...``: the RabbitMQ-compatible management API (the same one as on
  ``http.management_port``), which the console reads for queues, exchanges,
  bindings, connections and channels.
- ``/kafka/v1/...``: the Kafka HTTP API (``portask.http.kafka``).
- ``/_portask/...``: the control API for tests (``portask.http.control``): reset,
  peek, waits, faults, alarms.

Everything but the static assets needs HTTP Basic credentials of a broker user. A
request that changes something and comes from a page of another origin (its
``Origin`` header names another host) is refused, so that a web page elsewhere cannot
use credentials the browser remembers for this one.
"""

from __future__ import annotations

import base64
import logging
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from portask.http.control import PREFIX as CONTROL_PREFIX
from portask.http.control import control_api
from portask.http.kafka import PREFIX, kafka_api
from portask.http.kafka.api import KafkaApiError
from portask.http.server import Request, Response

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from portask.broker.core import Broker
    from portask.http.management import ManagementApi

log = logging.getLogger("portask.http")

REALM = 'Basic realm="Portask"'
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
          ".txt": "text/plain; charset=utf-8"}
# Scripts and styles only from this origin: the console has no inline code, so a value
# shown on a page can never run as script even if escaping were missed somewhere.
_SECURITY = [("Content-Security-Policy",
              "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
             ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-cache")]
_CHANGES = ("POST", "PUT", "PATCH", "DELETE")


def _static_files() -> dict[str, tuple[bytes, str]]:
    root = resources.files(__package__).joinpath("static")
    files: dict[str, tuple[bytes, str]] = {}
    for item in root.iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in _TYPES:
            files[item.name] = (item.read_bytes(), _TYPES[suffix])
    return files


class Console:
    def __init__(self, broker: Broker, management: ManagementApi) -> None:
        self.management = management
        self.authenticate = management.view.authenticate
        self.kafka = kafka_api(broker, management.view)
        self.control = control_api(broker, management.view)
        self.files = _static_files()

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        path = request.path
        if path.startswith("/console/") and request.method in ("GET", "HEAD"):
            found = self.files.get(path[len("/console/"):])
            if found is None:
                return Response(404, b"not found\n", "text/plain")
            return Response(200, found[0], found[1], list(_SECURITY))
        if path in ("/", "/index.html"):
            if request.method not in ("GET", "HEAD"):
                return Response(405, b"only GET and HEAD\n", "text/plain",
                                [("Allow", "GET, HEAD")])
            if not self._authorized(request):
                return _login_required()
            body, kind = self.files["index.html"]
            return Response(200, body, kind, list(_SECURITY))
        if path == "/api" or path.startswith("/api/"):
            if request.method in _CHANGES and not _same_origin(request):
                return _cross_origin()
            return self.management.handler(request)
        if path == PREFIX or path.startswith(PREFIX + "/"):
            if not self._authorized(request):
                response = KafkaApiError(401, "not_authorised", "login failed").response()
                response.headers.append(("WWW-Authenticate", REALM))
                return response
            if request.method in _CHANGES and not _same_origin(request):
                return _cross_origin()
            return self.kafka(request)
        if path.startswith(CONTROL_PREFIX + "/"):
            if not self._authorized(request):
                response = KafkaApiError(401, "not_authorised", "login failed").response()
                response.headers.append(("WWW-Authenticate", REALM))
                return response
            if request.method in _CHANGES and not _same_origin(request):
                return _cross_origin()
            return self.control(request)
        return Response(404, b"not found\n", "text/plain")

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode() \
                .partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if sep and self.authenticate(user, password):
            return True
        log.warning("HTTP access denied", extra={"fields": {"user": user}})
        return False


def _login_required() -> Response:
    return Response(401, b"log in with a broker user (guest/guest by default)\n",
                    "text/plain; charset=utf-8", [("WWW-Authenticate", REALM)])


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not sent by a browser page (curl, scripts, clients)
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _cross_origin() -> Response:
    return KafkaApiError(403, "cross_origin",
                         "changes are accepted only from the console's own origin").response()
