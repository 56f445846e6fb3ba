"""The secured local broker's set-up: its users and their passwords, its listener configuration, and the client
settings of each user.

The broker listens for clients on one SASL_SSL listener (SCRAM-SHA-512 over TLS that demands a client
certificate signed by the local CA); its KRaft controller listener stays on loopback, SASL_PLAINTEXT with PLAIN
for the broker itself. Kafka's StandardAuthorizer checks ACLs; ``admin`` is the super user. Every SCRAM user is
written into the metadata log when the storage is formatted (``kafka-storage format --add-scram``), as a salted
hash, so no password ever appears on a command line.

Secrets (user passwords, keystore and key passwords) live in files readable by their owner only under the
broker's folder; ``clients/<user>.env`` holds the ``LETTINGO_*`` settings of one user, to source or copy into a
``.env``. Nothing here prints a secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from pathlib import Path

from pydantic import SecretStr

from lettingo.errors import ConfigError
from streams.kafka.acls import COMPONENTS, user_of
from streams.kafka.tls import TLSFiles, ensure_tls
from streams.settings import StreamSettings

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
SCRAM_ITERATIONS = 8192
# The users made when the storage is formatted: the super user and one user per component (streams.kafka.acls).
DEFAULT_USERS = (ADMIN, *(user_of(c) for c in COMPONENTS))
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
USER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # nothing that --add-scram's [name=...,...] syntax would misread


class SecureSetupError(ConfigError, RuntimeError):
    """The secured broker's folder is inconsistent (for instance users asked for that were never created)."""


def tls_folder(root: Path) -> Path:
    return root / "tls"


def credentials_file(root: Path) -> Path:
    return root / "credentials.json"


def clients_folder(root: Path) -> Path:
    return root / "clients"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def read_passwords(root: Path) -> dict[str, str]:
    try:
        return json.loads(credentials_file(root).read_text())["users"]
    except FileNotFoundError:
        return {}


def ensure_passwords(root: Path, users: tuple[str, ...], formatted: bool) -> dict[str, str]:
    """A random password per user, made once. Once the storage is formatted, its users are fixed: asking for
    one that was not made then is an error (formatting again is the only way to add one here)."""
    passwords = read_passwords(root)
    missing = [u for u in users if u not in passwords]
    if missing and formatted:
        raise SecureSetupError(
            f"the secured broker under {root} was formatted without the user(s) {', '.join(missing)}: "
            f"stop it and delete {root} to make them"
        )
    if missing or not credentials_file(root).exists():
        passwords |= {u: secrets.token_hex(20) for u in missing}
        _write_private(credentials_file(root), json.dumps({"users": passwords}, indent=1) + "\n")
    return passwords


def scram_argument(user: str, password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """``--add-scram`` value with the salted password (RFC 5802 Hi: PBKDF2-HMAC-SHA-512), not the password."""
    salt = secrets.token_bytes(24)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return (
        f'{MECHANISM}=[name={user},iterations={iterations},salt="{b64(salt).decode()}",'
        f'saltedpassword="{b64(salted).decode()}"]'
    )


def _jaas(module: str, user: str, password: str, *extra: str) -> str:
    return f'{module} required username="{user}" password="{password}"{"".join(" " + e for e in extra)};'


def broker_properties(settings: StreamSettings, tls: TLSFiles, admin_password: str) -> dict[str, str]:
    """What the secured broker sets over the plain template (deploy/kafka/server.properties)."""
    port, controller = settings.broker.port, settings.broker.controller_port
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        # clients and the broker itself: SCRAM over TLS
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.scram.ScramLoginModule", ADMIN, admin_password
        ),
        # the controller (loopback): SCRAM cannot authenticate there (its users live in the metadata it serves)
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule",
            ADMIN,
            admin_password,
            f'user_{ADMIN}="{admin_password}"',
        ),
        # TLS from the local CA; every client shows a certificate that CA signed (mutual TLS)
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(tls.broker_keystore),
        "ssl.keystore.password": tls.keystore_password,
        "ssl.key.password": tls.keystore_password,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.ca_cert),
        # KIP-684: on a SASL_SSL listener only the listener-prefixed setting asks for client certificates
        "listener.name.sasl_ssl.ssl.client.auth": "required",
        "ssl.endpoint.identification.algorithm": "https",
        # ACLs
        "authorizer.class.name": AUTHORIZER,
        "super.users": f"User:{ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }


def override_properties(template: str, overrides: dict[str, str]) -> str:
    """The template without the keys that ``overrides`` sets, then those keys."""
    kept = [line for line in template.splitlines() if line.split("=", 1)[0].strip() not in overrides]
    added = [f"{key}={value}" for key, value in overrides.items()]
    return "\n".join([*kept, "", "# --- secured broker (streams.kafka.secure) ---", *added]) + "\n"


def prepare(root: Path, users: tuple[str, ...], formatted: bool) -> tuple[TLSFiles, dict[str, str]]:
    for user in users:
        if not USER_NAME.fullmatch(user):
            raise SecureSetupError(f"user name {user!r}: letters, digits, '.', '_' and '-' only")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    tls = ensure_tls(tls_folder(root))
    return tls, ensure_passwords(root, tuple(dict.fromkeys((ADMIN, *users))), formatted)


def user_settings(settings: StreamSettings, root: Path, user: str) -> StreamSettings:
    """``settings`` as ``user`` of the secured broker under ``root``: SASL_SSL, SCRAM, the CA, the client cert."""
    passwords = read_passwords(root)
    if user not in passwords:
        raise SecureSetupError(f"no user {user!r} on the secured broker under {root}")
    tls = TLSFiles(tls_folder(root))
    return settings.replace(
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": MECHANISM,
            "sasl_username": user,
            "sasl_password": SecretStr(passwords[user]),
            "ssl_cafile": tls.ca_cert,
            "ssl_certfile": tls.client_cert,
            "ssl_keyfile": tls.client_key,
            "ssl_key_password": SecretStr(tls.client_key_password),
        }
    )


def client_env(settings: StreamSettings, root: Path, user: str) -> dict[str, str]:
    """The ``LETTINGO_*`` variables with which a client reaches the secured broker as ``user``."""
    s = user_settings(settings, root, user)
    env = {
        "LETTINGO_BROKER_SECURE": "true",
        "LETTINGO_BROKER_PORT": str(s.broker.port),
        "LETTINGO_CONTROLLER_PORT": str(s.broker.controller_port),
        "LETTINGO_KAFKA_SECURITY_PROTOCOL": s.kafka.security_protocol,
        "LETTINGO_KAFKA_SASL_MECHANISM": MECHANISM,
        "LETTINGO_KAFKA_SASL_USERNAME": user,
        "LETTINGO_KAFKA_SASL_PASSWORD": s.kafka.sasl_password.get_secret_value(),  # type: ignore[union-attr]
        "LETTINGO_KAFKA_SSL_CAFILE": str(s.kafka.ssl_cafile),
        "LETTINGO_KAFKA_SSL_CERTFILE": str(s.kafka.ssl_certfile),
        "LETTINGO_KAFKA_SSL_KEYFILE": str(s.kafka.ssl_keyfile),
        "LETTINGO_KAFKA_SSL_KEY_PASSWORD": s.kafka.ssl_key_password.get_secret_value(),  # type: ignore[union-attr]
    }
    if not settings.uses_local_broker:
        env["LETTINGO_KAFKA_BOOTSTRAP"] = settings.bootstrap
    return env


def write_client_envs(settings: StreamSettings, root: Path) -> Path:
    """``clients/<user>.env`` for every user (owner-readable only); return the folder."""
    folder = clients_folder(root)
    folder.mkdir(mode=0o700, exist_ok=True)
    for user in read_passwords(root):
        lines = [f"{k}={v}" for k, v in client_env(settings, root, user).items()]
        _write_private(folder / f"{user}.env", "\n".join(lines) + "\n")
    return folder
