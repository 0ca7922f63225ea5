"""The server side of a SASL SCRAM exchange (RFC 5802, RFC 7677).

Protocol-neutral bytes in, bytes out: Kafka carries these messages in
SaslAuthenticate requests. Two steps: client-first -> server-first, then
client-final -> server-final (or a failure).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable

from portask.broker.users import SCRAM_HASHES, ScramCredential


class ScramError(ValueError):
    """The exchange failed; the message is safe to send to the client."""


def _attributes(message: str) -> dict[str, str]:
    out = {}
    for part in message.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise ScramError(f"malformed SCRAM attribute {part!r}")
        out[key] = value
    return out


def _unescape(name: str) -> str:
    return name.replace("=2C", ",").replace("=3D", "=")


class ScramServer:
    def __init__(
        self, mechanism: str, lookup: Callable[[str], ScramCredential | None]
    ) -> None:
        self.hash_name = SCRAM_HASHES[mechanism]
        self.lookup = lookup
        self.username: str | None = None
        self.done = False
        self._credential: ScramCredential | None = None
        self._first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._gs2_header = ""

    def step(self, data: bytes) -> bytes:
        try:
            message = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ScramError("SCRAM message is not UTF-8") from None
        if self._credential is None:
            return self._first(message)
        return self._final(message)

    def _first(self, message: str) -> bytes:
        parts = message.split(",", 2)
        if len(parts) != 3 or parts[0] not in ("n", "y"):
            raise ScramError("client-first message must start with a gs2 header 'n,,'")
        self._gs2_header = f"{parts[0]},{parts[1]},"
        self._first_bare = parts[2]
        attrs = _attributes(self._first_bare)
        if "n" not in attrs or "r" not in attrs:
            raise ScramError("client-first message lacks the user name or nonce")
        self.username = _unescape(attrs["n"])
        credential = self.lookup(self.username)
        if credential is None:
            raise ScramError(f"authentication failed for user {self.username!r}")
        self._credential = credential
        self._nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
        salt = base64.b64encode(credential.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={credential.iterations}"
        return self._server_first.encode()

    def _final(self, message: str) -> bytes:
        assert self._credential is not None
        without_proof, sep, proof_part = message.rpartition(",p=")
        if not sep:
            raise ScramError("client-final message lacks a proof")
        attrs = _attributes(without_proof)
        if attrs.get("r") != self._nonce:
            raise ScramError("SCRAM nonce mismatch")
        if base64.b64decode(attrs.get("c", "")) != self._gs2_header.encode():
            raise ScramError("SCRAM channel binding mismatch")
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        signature = hmac.digest(self._credential.stored_key, auth_message, self.hash_name)
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError:
            raise ScramError("SCRAM proof is not base64") from None
        if len(proof) != len(signature):
            raise ScramError(f"authentication failed for user {self.username!r}")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        stored = hashlib.new(self.hash_name, client_key).digest()
        if not hmac.compare_digest(stored, self._credential.stored_key):
            raise ScramError(f"authentication failed for user {self.username!r}")
        self.done = True
        server_signature = hmac.digest(self._credential.server_key, auth_message,
                                       self.hash_name)
        return b"v=" + base64.b64encode(server_signature)
