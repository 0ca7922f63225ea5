"""SASL: SaslHandshake (key 17) and SaslAuthenticate (key 36).

SaslHandshake, versions 0-1:
    v0  the tokens that follow travel as raw size-prefixed frames outside Kafka's
        request framing (clients of Kafka 0.10, e.g. kafka-python pinned to 0.10); a
        failed login closes the connection without an answer
    v1  the tokens that follow travel in SaslAuthenticate requests
SaslAuthenticate, versions 0-2:
    v0  one SASL token each way
    v1  session_lifetime_ms (0 here: sessions do not expire)
    v2  flexible

Mechanisms: PLAIN against ``auth.users`` and the users created over the management API;
SCRAM-SHA-256/512 against the credentials of the user store (set by
AlterUserScramCredentials, or derived when a user is created with a password) and
``auth.users``. A failed authentication is answered with SASL_AUTHENTICATION_FAILED and
the connection is closed, as Kafka does; a SCRAM failure with Kafka's own text.
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


@api(ApiKey.SASL_HANDSHAKE, (0, 1))
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
            mechanism = request.mechanism
            store = ctx.broker.users
            # The one user store: credentials set over Kafka or derived for users created
            # with a password, else those of auth.users.
            source = store if store is not None else ctx.server.users
            conn.scram = ScramServer(mechanism, lambda name: source.scram(name, mechanism))
        if ctx.api_version == 0:
            conn.raw_sasl = lambda token: _raw_token(ctx, token)
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
        conn.close_after_reply()
        return answer(ErrorCode.sasl_authentication_failed, message)

    if conn.sasl_mechanism is None or conn.authenticated_user is not None:
        conn.close_after_reply()
        return answer(ErrorCode.illegal_sasl_state,
                      "SaslAuthenticate must follow a SaslHandshake on this connection")
    failure, reply = _step(ctx, bytes(request.auth_bytes))
    if failure is not None:
        return fail(failure)
    return answer(ErrorCode.none, data=reply)


def _raw_token(ctx: RequestContext, token: bytes) -> bytes | None:
    """One raw token after SaslHandshake v0: the reply, or None for a failed login."""
    conn = ctx.connection
    failure, reply = _step(ctx, token)
    if failure is not None:
        return None
    if conn.authenticated_user is not None:
        conn.raw_sasl = None  # the exchange is over: Kafka requests follow
    return reply


def _step(ctx: RequestContext, token: bytes) -> tuple[str | None, bytes]:
    """Feed one client token to the connection's mechanism: (why it failed, or None;
    the token to answer with). Logs the failure."""
    conn = ctx.connection
    if conn.sasl_mechanism == "PLAIN":
        parts = token.split(b"\0")
        if len(parts) != 3:
            return _failed(conn, "malformed PLAIN token: expected authzid NUL user NUL password")
        _, user, password = (p.decode("utf-8", "replace") for p in parts)
        if not _plain_login(ctx, user, password):
            return _failed(conn, f"authentication failed for user {user!r}: invalid credentials")
        conn.authenticated_user = user
        return None, b""
    assert conn.scram is not None
    try:
        reply = conn.scram.step(token)
    except ScramError as exc:
        _failed(conn, str(exc))
        # Kafka's SaslServerAuthenticator hides the reason (it could say which users
        # exist) and answers every SCRAM failure with this text.
        return (f"Authentication failed during authentication due to invalid credentials "
                f"with SASL mechanism {conn.sasl_mechanism}"), b""
    if conn.scram.done:
        conn.authenticated_user = conn.scram.username
    return None, reply


def _failed(conn: Any, message: str) -> tuple[str, bytes]:
    log.warning("SASL authentication failed; closing the connection",
                extra={"fields": {"peer": conn.peer, "mechanism": conn.sasl_mechanism,
                                  "detail": message}})
    return message, b""


def _plain_login(ctx: RequestContext, user: str, password: str) -> bool:
    """``auth.users``, then the users created over the management API (the broker's one
    user store): PLAIN needs only a password check, which their stored hashes allow, so
    it serves users created from a RabbitMQ ``password_hash`` that SCRAM cannot."""
    if ctx.server.users.check_password(user, password):
        return True
    store = ctx.broker.users
    return store is not None and store.check_runtime_password(user, password)
