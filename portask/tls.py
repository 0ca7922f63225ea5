"""TLS for every listener: the server context, the handshake, and the client's identity.

Every TLS listener accepts TCP itself and runs the handshake before the protocol (Kafka,
AMQP, HTTP) sees the connection (``TlsServer``). Done this way, and not with
``create_server(ssl=...)``, because asyncio and uvloop drop a failed handshake silently
(or with a traceback in debug mode); here it is one warning line naming the peer, the
protocol and the reason, and a count in ``portask_connection_errors_total``. The protocol
then gets the TLS transport exactly as it would a plain one, and reads the verified
client certificate from it (``peer_subject``).

``tls.dev`` (``portask serve --dev-tls``) creates a CA, a server certificate for this
machine's names and a client certificate (CN = amqp.default_user, for mTLS and AMQP's
EXTERNAL) under ``<data_dir>/tls`` once, and reuses them on later starts, so clients
that trust the CA keep working.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portask import metrics
from portask.config import Settings, TlsSettings

log = logging.getLogger("portask.tls")

_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
DEV_DIR = "tls"
DEV_FILE_NAMES = ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")
DEV_VALID_DAYS = 825  # the longest validity macOS and browsers accept for a server cert


class TlsError(RuntimeError):
    """TLS cannot start; the message names the setting and the file."""


@dataclass(frozen=True)
class DevFiles:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The SSLContext every TLS listener uses, or None when TLS is off."""
    tls = settings.tls
    if not tls.enabled:
        return None
    if tls.dev:
        files = ensure_dev_files(Path(settings.server.data_dir) / DEV_DIR,
                                 settings.amqp.default_user, settings.server.host)
        cert, key, ca = files.server_cert, files.server_key, files.ca_cert
    else:
        assert tls.cert_file is not None and tls.key_file is not None
        cert, key, ca = tls.cert_file, tls.key_file, tls.ca_file
    return build_context(tls, cert, key, ca)


def build_context(tls: TlsSettings, cert: Path, key: Path, ca: Path | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"tls.cert_file={str(cert)!r} / tls.key_file={str(key)!r}: cannot "
                       f"load the certificate and key: {_reason(exc)}") from None
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"tls.ca_file={str(ca)!r}: cannot load CA certificates: "
                           f"{_reason(exc)}") from None
    ctx.verify_mode = _VERIFY[tls.client_auth]
    return ctx


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class TlsServer:
    """Accepts on a listening socket and hands each connection to the protocol once its
    TLS handshake is done; a handshake that fails or times out is one warning line.

    ``connect_accepted_socket(ssl=...)`` raises when the handshake fails, which is what
    gives the warning its peer and reason (``create_server(ssl=...)`` drops the failure,
    and ``start_tls`` after a plain accept races uvloop, which starts reading before it
    can take over the socket).
    """

    def __init__(self, sock: socket.socket, protocol: str, context: ssl.SSLContext,
                 timeout_s: float, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._sock = sock
        self._protocol = protocol
        self._context = context
        self._timeout_s = timeout_s
        self._factory = factory
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self._sock)
            except OSError as exc:  # out of descriptors, a reset in the backlog: go on
                log.warning("accept failed", extra={"fields": {"protocol": self._protocol,
                                                               "reason": _reason(exc)}})
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._handshake(loop, conn, peer))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, loop: asyncio.AbstractEventLoop, conn: socket.socket,
                         peer: Any) -> None:
        try:
            await loop.connect_accepted_socket(
                self._factory, conn, ssl=self._context, ssl_handshake_timeout=self._timeout_s)
        except (OSError, TimeoutError, EOFError) as exc:  # ssl.SSLError is an OSError
            handshake_failed(self._protocol, peer, exc)
            conn.close()

    async def close(self) -> None:
        tasks = [t for t in (self._accepting, *self._handshakes) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sock.close()


def handshake_failed(protocol: str, peer: Any, exc: BaseException) -> None:
    metrics.CONNECTION_ERRORS.labels(protocol, "tls handshake").inc()
    reason = "handshake timed out" if isinstance(exc, TimeoutError) else _reason(exc)
    log.warning("TLS handshake failed; closing the connection",
                extra={"fields": {"protocol": protocol, "peer": peer, "reason": reason}})


def peer_subject(transport: asyncio.BaseTransport) -> str | None:
    """The verified client certificate's subject in RFC 2253 form (``CN=app,O=acme``),
    or None when the connection is not TLS or the client sent no certificate."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def peer_common_name(transport: asyncio.BaseTransport) -> str | None:
    """The verified client certificate's CN (AMQP's EXTERNAL login), or None."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(
        NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


# -- the development CA ---------------------------------------------------------------


def ensure_dev_files(directory: Path, client_name: str, host: str) -> DevFiles:
    """The dev CA and certificates, created on first use and reused afterwards."""
    files = DevFiles(*(directory / n for n in DEV_FILE_NAMES))
    if all(p.exists() for p in vars(files).values()):
        return files
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _create_dev_files(files, client_name, host)
    except OSError as exc:
        raise TlsError(f"tls.dev: cannot write certificates to {directory}: "
                       f"{exc.strerror or exc}") from None
    return files


def _create_dev_files(files: DevFiles, client_name: str, host: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(DEV_VALID_DAYS)
    if files.ca_cert.exists() and files.ca_key.exists():
        ca_key = _load_key(files.ca_key)
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Portask dev"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "Portask dev CA")])
        ca_cert = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(files.ca_key, ca_key)
        _write(files.ca_cert, _pem(ca_cert))

    def issue(cn: str, usage: Any, sans: list[x509.GeneralName]) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                        "Portask dev"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server_cert, server_key = issue("localhost", ExtendedKeyUsageOID.SERVER_AUTH,
                                    _server_names(host))
    _write_key(files.server_key, server_key)
    _write(files.server_cert, _pem(server_cert))
    client_cert, client_key = issue(client_name, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    _write_key(files.client_key, client_key)
    _write(files.client_cert, _pem(client_cert))


def _server_names(host: str) -> list[Any]:
    from cryptography import x509

    dns = {"localhost", socket.gethostname()}
    ips = {"127.0.0.1", "::1"}
    if host and host not in ("0.0.0.0", "::"):
        try:
            ipaddress.ip_address(host)
            ips.add(host)
        except ValueError:
            dns.add(host)
    return ([x509.DNSName(d) for d in sorted(dns) if d]
            + [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)])


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _write_key(path: Path, key: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    _write(path, key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()), mode=0o600)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    # Written aside and renamed: a crash never leaves half a certificate to be reused.
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
