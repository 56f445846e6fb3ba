"""TLS material for the secured local broker, made on this machine with ``openssl`` (nothing downloaded).

One folder holds a private CA (``ca.crt``, ``ca.key``), the broker's certificate as a PKCS#12 keystore
(``broker.p12``, read by the JVM) and one client certificate with an encrypted key (``client.crt``,
``client.key``) for mutual TLS. Both leaf certificates name ``localhost`` and ``127.0.0.1``. The files are made
once and reused; every private key and password file is readable by its owner only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lettingo.errors import ConfigError

DAYS = 3650
CA_SUBJECT = "/CN=lettingo local Kafka CA"
BROKER_SUBJECT = "/CN=localhost"
CLIENT_SUBJECT = "/CN=lettingo client"
SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1"


class TLSError(ConfigError, RuntimeError):
    """The certificates could not be made (openssl missing or failing)."""


@dataclass(frozen=True)
class TLSFiles:
    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def broker_keystore(self) -> Path:
        return self.folder / "broker.p12"

    @property
    def client_cert(self) -> Path:
        return self.folder / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.folder / "client.key"

    @property
    def keystore_password_file(self) -> Path:
        return self.folder / "keystore.password"

    @property
    def client_key_password_file(self) -> Path:
        return self.folder / "client-key.password"

    @property
    def keystore_password(self) -> str:
        return self.keystore_password_file.read_text().strip()

    @property
    def client_key_password(self) -> str:
        return self.client_key_password_file.read_text().strip()

    def complete(self) -> bool:
        made = (self.ca_cert, self.broker_keystore, self.client_cert, self.client_key)
        return all(p.is_file() for p in (*made, self.keystore_password_file, self.client_key_password_file))


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TLSError("openssl is needed to make the secured broker's certificates (apt-get install openssl)")
    # Passwords travel as file: arguments, never on the command line (other local users can read /proc/*/cmdline).
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise TLSError(f"openssl {args[0]} failed: {done.stderr.strip()[-1000:]}")


def _leaf(folder: Path, name: str, subject: str, usage: str) -> None:
    """A key and a CSR for ``name``, signed by the CA with SAN localhost / 127.0.0.1."""
    ext = folder / f"{name}.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n"
        f"{SAN}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.plain.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
        cwd=folder,
    )
    os.chmod(folder / f"{name}.plain.key", 0o600)
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        str(DAYS),
        "-sha256",
        "-extfile",
        ext.name,
        "-out",
        f"{name}.crt",
        cwd=folder,
    )
    for leftover in (ext, folder / f"{name}.csr"):
        leftover.unlink()


def ensure_tls(folder: Path) -> TLSFiles:
    """Make the CA, the broker's keystore and the client certificate under ``folder`` unless they exist."""
    files = TLSFiles(folder)
    if files.complete():
        return files
    if folder.exists():
        shutil.rmtree(folder)  # a half-made set (an interrupted run): start over
    folder.mkdir(parents=True, mode=0o700)
    _write_secret(files.keystore_password_file, secrets.token_hex(16))
    _write_secret(files.client_key_password_file, secrets.token_hex(16))
    _openssl(
        "req",
        "-x509",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        str(DAYS),
        "-sha256",
        "-subj",
        CA_SUBJECT,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
        cwd=folder,
    )
    os.chmod(files.ca_key, 0o600)
    _leaf(folder, "broker", BROKER_SUBJECT, "serverAuth,clientAuth")  # the broker is also its own client
    _openssl(
        "pkcs12",
        "-export",
        "-in",
        "broker.crt",
        "-inkey",
        "broker.plain.key",
        "-certfile",
        "ca.crt",
        "-name",
        "broker",
        "-out",
        "broker.p12",
        "-passout",
        f"file:{files.keystore_password_file.name}",
        cwd=folder,
    )
    _leaf(folder, "client", CLIENT_SUBJECT, "clientAuth")
    _openssl(
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        "client.plain.key",
        "-out",
        "client.key",
        "-passout",
        f"file:{files.client_key_password_file.name}",
        cwd=folder,
    )
    for plain in ("broker.plain.key", "client.plain.key", "broker.crt", "ca.srl"):
        (folder / plain).unlink(missing_ok=True)
    for secret in (files.broker_keystore, files.client_key):
        os.chmod(secret, 0o600)
    return files
