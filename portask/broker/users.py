"""Users and their credentials, from the ``auth.users`` setting.

Passwords are kept only to derive what each mechanism needs: a constant-time
comparison for PLAIN, and SCRAM's salted keys (RFC 5802), derived once per user and
hash on first use since PBKDF2 is deliberately slow.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

SCRAM_ITERATIONS = 4096
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


@dataclass(frozen=True, slots=True)
class ScramCredential:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


class Users:
    def __init__(self, spec: str) -> None:
        self._passwords: dict[str, str] = {}
        for pair in filter(None, spec.split(",")):
            name, _, password = pair.partition(":")
            self._passwords[name] = password
        self._scram: dict[tuple[str, str], ScramCredential] = {}

    def names(self) -> list[str]:
        return list(self._passwords)

    def passwords(self) -> list[tuple[str, str]]:
        """For exporting definitions (RabbitMQ's salted hashes are derived from these)."""
        return list(self._passwords.items())

    def check_password(self, user: str, password: str) -> bool:
        expected = self._passwords.get(user)
        # Compare even for unknown users so timing does not reveal which names exist.
        ok = hmac.compare_digest((expected or "\0").encode(), password.encode())
        return expected is not None and ok

    def scram(self, user: str, mechanism: str) -> ScramCredential | None:
        password = self._passwords.get(user)
        if password is None:
            return None
        key = (user, mechanism)
        found = self._scram.get(key)
        if found is None:
            found = self._scram[key] = derive_scram(password, SCRAM_HASHES[mechanism])
        return found


def derive_scram(password: str, hash_name: str, salt: bytes | None = None,
                 iterations: int = SCRAM_ITERATIONS) -> ScramCredential:
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)
    return credential_from_salted(salted, salt, iterations, hash_name)


def credential_from_salted(salted: bytes, salt: bytes, iterations: int,
                           hash_name: str) -> ScramCredential:
    """What the server keeps of a SaltedPassword (RFC 5802): Kafka's admin clients send
    the salted password, never the password, so this is all a broker can derive."""
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    return ScramCredential(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(hash_name, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", hash_name),
    )
