"""Kafka error codes: kio's generated enum, the one place the protocol layer takes them from."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

__all__ = ["ErrorCode"]
