"""SASL: SaslHandshake (key 17) and SaslAuthenticate (key 36).

SaslHandshake, version 1:
    v1  the tokens that follow travel in SaslAuthenticate requests (v0 would switch the
        connection to raw SASL tokens outside Kafka's framing; every current client
        uses v1 when offered, so v0 is not served)
SaslAuthenticate, versions 0-2:
    v0  one SASL token each way
    v1  session_lifetime_ms (0 here: sessions do not expire)
    v2  flexible

Mechanisms: PLAIN and SCRAM-SHA-256/512 against ``auth.users``. A
failed authentication is answered with SASL_AUTHENTICATION_FAILED and the connection
is closed, as Kafka does.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.scram import ScramError, ScramServer

log = logging.getLogger("portask.kafka")


@api(ApiKey.SASL_HANDSHAKE, (1, 1))
def sasl_handshake(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.SASL_HANDSHAKE, ctx.api_version)
    offered = ctx.server.sasl_mechanisms
    conn = ctx.connection
    if conn.authenticated_user is not None or conn.sasl_mechanism is not None:
        error = ErrorCode.illegal_sasl_state
    elif request.mechanism not in offered:
        error = ErrorCode.unsupported_sasl_mechanism
    else:
        error = ErrorCode.none
        conn.sasl_mechanism = request.mechanism
        if request.mechanism != "PLAIN":
            users = ctx.server.users
            conn.scram = ScramServer(request.mechanism,
                                     lambda name: users.scram(name, request.mechanism))
    return registry.make(types.SaslHandshakeResponse, error_code=error, mechanisms=offered)


@api(ApiKey.SASL_AUTHENTICATE, (0, 2))
def sasl_authenticate(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.SASL_AUTHENTICATE, ctx.api_version)
    conn = ctx.connection

    def answer(error: ErrorCode, message: str | None = None, data: bytes = b"") -> Any:
        return registry.make(
            types.SaslAuthenticateResponse, error_code=error, error_message=message,
            auth_bytes=data, session_lifetime=datetime.timedelta(0),
        )

    def fail(message: str) -> Any:
        log.warning("SASL authentication failed; closing the connection",
                    extra={"fields": {"peer": conn.peer, "mechanism": conn.sasl_mechanism,
                                      "detail": message}})
        conn.close_after_reply()
        return answer(ErrorCode.sasl_authentication_failed, message)

    if conn.sasl_mechanism is None or conn.authenticated_user is not None:
        conn.close_after_reply()
        return answer(ErrorCode.illegal_sasl_state,
                      "SaslAuthenticate must follow a SaslHandshake on this connection")
    if conn.sasl_mechanism == "PLAIN":
        parts = bytes(request.auth_bytes).split(b"\0")
        if len(parts) != 3:
            return fail("malformed PLAIN token: expected authzid NUL user NUL password")
        _, user, password = (p.decode("utf-8", "replace") for p in parts)
        if not ctx.server.users.check_password(user, password):
            return fail(f"authentication failed for user {user!r}: invalid credentials")
        conn.authenticated_user = user
        return answer(ErrorCode.none)
    assert conn.scram is not None
    try:
        reply = conn.scram.step(bytes(request.auth_bytes))
    except ScramError as exc:
        return fail(str(exc))
    if conn.scram.done:
        conn.authenticated_user = conn.scram.username
    return answer(ErrorCode.none, data=reply)
