"""Throw-away TLS material for tests, made with ``openssl`` as an operator would make it.

A CA, and a server certificate it signs for 127.0.0.1 (so clients verify the host name as in
production), as PEM files and as the PKCS12 keystore a Java broker reads.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class ServerTls:
    """A CA certificate and a server key and certificate it signed (also as a keystore)."""

    ca: Path
    cert: Path
    key: Path
    keystore: Path
    keystore_password: str


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str = "ca") -> Path:
    """A self-signed CA certificate ``<name>.pem`` (its key beside it); returns the cert."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", *KEY, "-days", "2", "-subj", f"/CN=spm test {name}",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem"


def make_server_tls(directory: Path, ca: Path, password: str = "keystore-secret") -> ServerTls:
    """A key and a certificate for 127.0.0.1/localhost signed by ``ca``, PEM and PKCS12."""
    san = directory / "san.cnf"
    san.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "req", *KEY, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", ca, "-CAkey", ca.with_suffix(".key"),
        "-CAcreateserial", "-days", "2", "-extfile", san, "-out", "server.pem", cwd=directory,
    )  # fmt: skip
    _openssl(
        "pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-certfile", ca,
        "-name", "server", "-passout", f"pass:{password}", "-out", "server.p12", cwd=directory,
    )  # fmt: skip
    return ServerTls(
        ca, directory / "server.pem", directory / "server.key", directory / "server.p12", password
    )
