"""`portask serve --dev-tls`: certificates created once, printed, reused; bad files named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography import x509

from tests.integration.tls.conftest import start_tls_broker


def test_dev_tls_prints_where_the_certificates_are_and_reuses_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = start_tls_broker(data)
    broker.proc.stop()
    tls_dir = (data / "tls").resolve()
    line = next(x for x in broker.proc.stdout_lines if x.startswith("portask: dev TLS:"))
    assert f"CA certificate {tls_dir / 'ca.pem'}" in line
    assert f"client certificate {tls_dir / 'client.pem'}, key {tls_dir / 'client.key'}" in line
    first_ca = (tls_dir / "ca.pem").read_bytes()
    server = x509.load_pem_x509_certificate((tls_dir / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert (tls_dir / "ca.key").stat().st_mode & 0o077 == 0  # private keys: owner only

    again = start_tls_broker(data)
    again.proc.stop()
    assert (tls_dir / "ca.pem").read_bytes() == first_ca  # clients that trust it still do


def test_unreadable_certificate_is_refused_naming_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    result = subprocess.run(
        [sys.executable, "-m", "portask", "serve", "--data-dir", str(tmp_path / "data"),
         "--set", f"tls.cert_file={missing}", "--set", f"tls.key_file={missing}"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"tls.cert_file='{missing}'" in result.stderr
    assert "cannot load the certificate and key" in result.stderr
    assert "Traceback" not in result.stderr
