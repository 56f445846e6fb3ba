"""A local single-node KRaft Kafka broker, run from the Maven Central jars (deploy/kafka/pom.xml).

``start`` fetches the jars if they are missing, formats storage once, starts the JVM in its own session and
waits until a client can fetch cluster metadata. ``stop`` ends it by its pid (SIGTERM, then SIGKILL).

With ``LETTINGO_BROKER_SECURE`` (``lettingo broker start --secure``) the broker is the secured one, in its own
folder (``<home>/kafka-secure``): a SASL_SSL listener (SCRAM-SHA-512, mutual TLS from a CA made here), ACLs
checked by KRaft's StandardAuthorizer, ``admin`` the super user, one user per component with its ACLs
(:mod:`streams.kafka.secure`, :mod:`streams.kafka.acls`). The broker's own probes connect as ``admin``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from lettingo.errors import ServiceError
from streams.kafka import acls, secure
from streams.kafka.tls import TLSError
from streams.settings import StreamSettings

log = logging.getLogger(__name__)

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"


class BrokerError(ServiceError):
    """The local broker cannot be fetched, started, reached or stopped."""


@dataclass(frozen=True)
class BrokerPaths:
    root: Path
    libs: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def console_log(self) -> Path:
        return self.log_dir / "console.log"

    @classmethod
    def of(cls, settings: StreamSettings) -> BrokerPaths:
        plain = settings.path("kafka").resolve()
        root = settings.path("kafka-secure").resolve() if settings.broker.secure else plain
        return cls(root, (settings.kafka.libs or plain / "libs").resolve())


def fetch_jars(paths: BrokerPaths) -> None:
    """Copy Kafka and its runtime dependencies from Maven Central into ``paths.libs`` (once)."""
    if any(paths.libs.glob("kafka_2.13-*.jar")):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is needed to fetch the Kafka jars: install it (apt-get install maven)")
    log.info("fetching Kafka jars from Maven Central into %s", paths.libs)
    cmd = [mvn, "-q", "-B", "-f", str(DEPLOY_DIR / "pom.xml"), "package", f"-Dkafka.lib.dir={paths.libs}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not any(paths.libs.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"mvn failed to fetch the Kafka jars:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Java 17+ is needed to run the broker: install it (apt-get install openjdk-17-jre-headless)")
    return java


def _java_cmd(paths: BrokerPaths, main_class: str, *args: str, heap: str = "256m") -> list[str]:
    return [
        _java(),
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={paths.log_dir}",
        f"-Dlog4j.configuration=file:{DEPLOY_DIR / 'log4j.properties'}",
        "-cp",
        f"{paths.libs}/*",
        main_class,
        *args,
    ]


def _render_config(paths: BrokerPaths, settings: StreamSettings, overrides: dict[str, str] | None = None) -> None:
    template = Template((DEPLOY_DIR / "server.properties").read_text())
    text = template.substitute(
        broker_port=settings.broker.port,
        controller_port=settings.broker.controller_port,
        log_dirs=paths.data,
    )
    if overrides:
        text = secure.override_properties(text, overrides)
        fd = os.open(paths.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds passwords
        with os.fdopen(fd, "w") as f:
            f.write(text)
    else:
        paths.config.write_text(text)


def _formatted(paths: BrokerPaths) -> bool:
    return (paths.data / "meta.properties").exists()


def _format_storage(paths: BrokerPaths, scram: list[str] | None = None) -> None:
    if _formatted(paths):
        return
    cluster_id = "-"
    while cluster_id[0] in "-_":  # the storage tool's argument parser reads a leading '-' as an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    extra = [arg for credential in scram or [] for arg in ("--add-scram", credential)]
    cmd = _java_cmd(paths, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(paths.config), *extra)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BrokerError(f"formatting the broker's storage failed:\n{done.stdout}{done.stderr}")


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM binds: a TIME_WAIT port is free
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def probe_settings(settings: StreamSettings) -> StreamSettings:
    """The settings the broker's own probes connect with: ``admin`` on the secured local broker."""
    if settings.broker.secure and settings.uses_local_broker:
        root = BrokerPaths.of(settings).root
        if secure.ADMIN in secure.read_passwords(root):
            return secure.user_settings(settings, root, secure.ADMIN)
    return settings


def admin_settings(settings: StreamSettings) -> StreamSettings:
    """The super user's settings on the secured local broker (for granting ACLs)."""
    if not settings.broker.secure:
        raise BrokerError("only the secured local broker (LETTINGO_BROKER_SECURE) has an admin user here")
    return secure.user_settings(settings, BrokerPaths.of(settings).root, secure.ADMIN)


def user_settings(settings: StreamSettings, user: str) -> StreamSettings:
    """``settings`` as ``user`` of the secured local broker (SASL_SSL, SCRAM, CA file, client certificate)."""
    return secure.user_settings(settings, BrokerPaths.of(settings).root, user)


def running_pid(paths: BrokerPaths) -> int | None:
    """The pid of a broker this machine started, if that process is still alive."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"kafka.Kafka" not in cmdline.read_bytes():
        return None  # the pid was reused by another program
    return pid


async def _fetch_metadata(settings: StreamSettings, timeout_s: float) -> int:
    producer = AIOKafkaProducer(**settings.kafka_client_config(), request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(producer.start(), timeout_s)
        metadata = await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout_s)
        return len(metadata.brokers())
    finally:
        await producer.stop()


def reachable(settings: StreamSettings, timeout_s: float = 5.0) -> bool:
    """True when a client can fetch cluster metadata (an open port alone is not enough)."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # a refused connection is the expected answer while probing
    try:
        return asyncio.run(_fetch_metadata(settings, timeout_s)) > 0
    except (TimeoutError, KafkaError, OSError):
        return False
    finally:
        quiet.setLevel(level)


def start(settings: StreamSettings, timeout_s: float = 90.0, users: tuple[str, ...] = ()) -> str:
    """Start the local broker unless one is running or ``LETTINGO_KAFKA_BOOTSTRAP`` names another; return a
    one-line description of where it is. The secured broker (``settings.broker.secure``) is made with
    :data:`secure.DEFAULT_USERS` and ``users`` (SCRAM users exist from the storage's format on), and grants each
    component's ACLs (for these settings' topic prefix and app id) to its user."""
    if not settings.uses_local_broker:
        if not reachable(settings):
            raise BrokerError(f"LETTINGO_KAFKA_BOOTSTRAP={settings.bootstrap} is set but no broker answers there")
        return f"using the broker at {settings.bootstrap} (LETTINGO_KAFKA_BOOTSTRAP); nothing started"
    paths = BrokerPaths.of(settings)
    overrides = None
    if settings.broker.secure:
        paths.root.mkdir(parents=True, exist_ok=True)
        try:
            tls, passwords = secure.prepare(paths.root, (*secure.DEFAULT_USERS, *users), _formatted(paths))
        except (secure.SecureSetupError, TLSError) as e:
            raise BrokerError(str(e)) from e
        overrides = secure.broker_properties(settings, tls, passwords[secure.ADMIN])
    probe = probe_settings(settings)
    pid = running_pid(paths)
    if pid is not None and reachable(probe):
        return f"already running: pid {pid} at {settings.bootstrap}{_secured(settings, paths)}, log {paths.log_file}"
    if pid is None and reachable(probe, timeout_s=2.0):
        raise BrokerError(
            f"a broker this tool did not start already answers at {settings.bootstrap}: stop it, or set "
            f"LETTINGO_KAFKA_BOOTSTRAP={settings.bootstrap} to use it"
        )
    if pid is None:
        for port, name in (
            (settings.broker.port, "LETTINGO_BROKER_PORT"),
            (settings.broker.controller_port, "LETTINGO_CONTROLLER_PORT"),
        ):
            if _port_in_use(port):
                other = "plaintext" if settings.broker.secure else "secured"
                raise BrokerError(
                    f"port {port} ({name}) is taken by another program (the {other} local broker? "
                    f"`lettingo broker stop{'' if settings.broker.secure else ' --secure'}`): stop it or choose "
                    "other ports with LETTINGO_BROKER_PORT and LETTINGO_CONTROLLER_PORT"
                )
    fetch_jars(paths)
    for folder in (paths.data, paths.log_dir):
        folder.mkdir(parents=True, exist_ok=True)
    _render_config(paths, settings, overrides)
    if settings.broker.secure:
        scram = [secure.scram_argument(u, p) for u, p in secure.read_passwords(paths.root).items()]
        _format_storage(paths, scram)
    else:
        _format_storage(paths)
    with paths.console_log.open("ab") as console:
        proc = subprocess.Popen(
            _java_cmd(paths, "kafka.Kafka", str(paths.config), heap=settings.broker.heap),
            stdout=console,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the CLI that started it; stopped by pid
        )
    paths.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            paths.pid_file.unlink(missing_ok=True)
            raise BrokerError(f"the broker exited with code {proc.returncode}; see {paths.log_file}")
        if reachable(probe, timeout_s=3.0):
            return f"started: pid {proc.pid} at {settings.bootstrap}{_secured(settings, paths)}, log {paths.log_file}"
        time.sleep(0.5)
    stop(settings)
    raise BrokerError(f"the broker did not answer within {timeout_s:.0f} s; see {paths.log_file}")


def _secured(settings: StreamSettings, paths: BrokerPaths) -> str:
    """For the secured broker: grant the components' ACLs, write each user's client settings, say where."""
    if not settings.broker.secure:
        return ""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # not a line per connection ("Authenticated as admin")
    try:
        acls.grant_components(probe_settings(settings), settings)
    except (KafkaError, OSError) as e:
        raise BrokerError(f"the secured broker runs but granting the components' ACLs failed: {e}") from e
    finally:
        quiet.setLevel(level)
    clients = secure.write_client_envs(settings, paths.root)
    return f" (SASL_SSL {secure.MECHANISM}, mutual TLS, ACLs; each user's client settings: {clients}/<user>.env)"


def stop(settings: StreamSettings, timeout_s: float = 30.0) -> str:
    if not settings.uses_local_broker:
        return f"LETTINGO_KAFKA_BOOTSTRAP={settings.bootstrap} is not ours to stop; nothing done"
    paths = BrokerPaths.of(settings)
    pid = running_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return "not running"
    os.kill(pid, signal.SIGTERM)  # a controlled shutdown flushes logs and closes the metadata log cleanly
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running_pid(paths) is not None:
        time.sleep(0.2)
    if running_pid(paths) is not None:
        os.kill(pid, signal.SIGKILL)
        log.warning("broker pid %d did not stop within %.0f s; killed", pid, timeout_s)
    paths.pid_file.unlink(missing_ok=True)
    return f"stopped pid {pid}"


def status(settings: StreamSettings) -> tuple[bool, str]:
    if not settings.uses_local_broker:
        ok = reachable(settings)
        return ok, f"{settings.bootstrap} (LETTINGO_KAFKA_BOOTSTRAP): {'reachable' if ok else 'NOT reachable'}"
    paths = BrokerPaths.of(settings)
    pid = running_pid(paths)
    if pid is None:
        return False, f"not running (would listen on {settings.bootstrap})"
    ok = reachable(probe_settings(settings))
    state = "running" if ok else "process alive but NOT answering"
    kind = " (secured: SASL_SSL, mutual TLS, ACLs)" if settings.broker.secure else ""
    return ok, f"{state}: pid {pid} at {settings.bootstrap}{kind}, log {paths.log_file}"
