"""AMQP 0-9-1 numbers in one place: frame types, class/method ids and reply codes."""

from __future__ import annotations

from portask.broker.amqp import errors as amqp_errors

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_MIN_SIZE = 4096
# type octet + channel short + size long before the payload, frame-end octet after it.
FRAME_OVERHEAD = 8

CLASS_CONNECTION = 10
CLASS_CHANNEL = 20
CLASS_EXCHANGE = 40
CLASS_QUEUE = 50
CLASS_BASIC = 60
CLASS_CONFIRM = 85
CLASS_TX = 90

# Basic method ids (within class 60) that hand-written code reads, writes or names in
# an error; every other method is known by its pamqp class (``commands.Basic.Qos``).
BASIC_CONSUME = 20
BASIC_PUBLISH = 40
BASIC_RETURN = 50
BASIC_DELIVER = 60
BASIC_GET_OK = 71
BASIC_ACK = 80
BASIC_NACK = 120
QUEUE_DECLARE_OK = 11  # within class 50

REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
NO_CONSUMERS = 313
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

REPLY_NAMES = {
    REPLY_SUCCESS: "OK",
    NO_ROUTE: "NO_ROUTE",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}

# Broker refusals that only close the channel; the rest close the connection.
CHANNEL_ERROR_CODES: dict[type[amqp_errors.BrokerError], int] = {
    amqp_errors.NotFound: NOT_FOUND,
    amqp_errors.PreconditionFailed: PRECONDITION_FAILED,
    amqp_errors.ResourceLocked: RESOURCE_LOCKED,
    amqp_errors.AccessRefused: ACCESS_REFUSED,
}
CONNECTION_ERROR_CODES: dict[type[amqp_errors.BrokerError], int] = {
    amqp_errors.CommandInvalid: COMMAND_INVALID,
    amqp_errors.NotImplementedFeature: NOT_IMPLEMENTED,
}


def reply_text(code: int, text: str) -> str:
    """RabbitMQ prefixes the reply text with the code's name; clients show it verbatim.
    A reply text is a short string, so past 255 bytes RabbitMQ keeps the first 252 and
    appends "..." (here cut at a character boundary, so the text stays UTF-8)."""
    full = f"{REPLY_NAMES.get(code, 'ERROR')} - {text}"
    raw = full.encode()
    if len(raw) <= 255:
        return full
    return raw[:252].decode(errors="ignore") + "..."
