"""Every component against the secured local broker (issue 17, items 1 and 2): SASL_SSL with SCRAM-SHA-512, mutual
TLS from a CA made on this machine, the KRaft StandardAuthorizer with ACLs.

One secured broker for the whole module, started by ``lettingo broker start --secure`` on free ports under the
module's own home (the shared broker on 19092 is never touched), stopped at the end. Each component runs as its
own SCRAM user with exactly the ACLs of ``streams.kafka.acls`` (the README's table), so these tests are what that
table is known to be enough for. ``admin`` (the super user) only sets up and inspects.

Before this work none of it could pass: the client settings had no CA file and no client certificate, so no
client could even finish the TLS handshake with a private-CA, mutual-TLS broker, and a wrong password or a
plaintext client surfaced as aiokafka's "Unable to bootstrap from [...]" after a logged line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import SecretStr

from lettingo.errors import ServiceError
from lettingo.records import ModelStatus, ModelVersion
from streams.kafka import acls, broker, secure
from streams.kafka.access import KafkaAccessError, check_connection
from streams.settings import StreamSettings
from tests.conftest import DATASET, REPO
from tests.streams_harness import WorkerProcess, free_port, wait_for
from trainer.batches import BatchStore
from trainer.kafka_io import consume_pair_batch, publish_model_version
from trainer.tiny_model import build_tiny_policy, synthetic_pairs

pytestmark = pytest.mark.kafka

NO_READ = "lettingo-noread"  # a user with the worker's ACLs except READ on interactions
LIBS = REPO / ".lettingo" / "kafka" / "libs"


@dataclass
class SecureBroker:
    home: Path
    env: dict[str, str]  # the broker's own settings (home, ports, LETTINGO_BROKER_SECURE), no client settings
    settings: StreamSettings  # this module's topic prefix and app id, no credentials

    def as_user(self, user: str, **changes: object) -> StreamSettings:
        return broker.user_settings(self.settings, user).replace(kafka=changes)

    def admin(self) -> StreamSettings:
        return broker.admin_settings(self.settings)

    def client_env(self, user: str, settings: StreamSettings | None = None) -> dict[str, str]:
        """The environment of a ``lettingo`` command run as ``user`` (the broker's clients/<user>.env)."""
        s = settings or self.settings
        return {
            **self.env,
            **secure.client_env(s, broker.BrokerPaths.of(s).root, user),
            "LETTINGO_TOPIC_PREFIX": s.topics.prefix,
            "LETTINGO_APP_ID": s.app.id,
        }


def _base_env() -> dict[str, str]:
    """This process's environment without any Kafka client setting (a developer's shell may have some)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LETTINGO_KAFKA_", "LETTINGO_BROKER_"))}


def lettingo(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nice", sys.executable, "-m", "lettingo.cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    if not any(LIBS.glob("kafka_2.13-*.jar")):
        broker.fetch_jars(broker.BrokerPaths(REPO / ".lettingo" / "kafka", LIBS))
    home = tmp_path_factory.mktemp("secure")
    port, controller = free_port(), free_port()
    env = _base_env() | {
        "LETTINGO_HOME": str(home),
        "LETTINGO_KAFKA_LIBS": str(LIBS),
        "LETTINGO_BROKER_PORT": str(port),
        "LETTINGO_CONTROLLER_PORT": str(controller),
        "OMP_NUM_THREADS": "1",
    }
    settings = StreamSettings(
        home=home,
        kafka={"libs": LIBS, "bootstrap": f"127.0.0.1:{port}"},
        broker={"port": port, "controller_port": controller, "secure": True},
        topics={"prefix": f"t{uuid.uuid4().hex[:10]}-"},
        app={"id": f"test-{uuid.uuid4().hex[:10]}"},
    )
    try:
        started = lettingo(env, "broker", "start", "--secure", "--user", NO_READ, timeout=180)
        env["LETTINGO_BROKER_SECURE"] = "true"  # stop and status below, as a user's clients/<user>.env sets it
        assert started.returncode == 0, started.stderr
        assert "started: pid" in started.stdout and "SASL_SSL" in started.stdout, started.stdout
        box = SecureBroker(home, env, settings)
        # The module's prefix and app id are not the defaults the CLI granted: grant them (as a deployment would).
        acls.grant_components(box.admin(), settings)
        yield box
    finally:
        stopped = lettingo(env | {"LETTINGO_BROKER_SECURE": "true"}, "broker", "stop")
        assert stopped.returncode == 0 and stopped.stdout.startswith("stopped pid"), stopped.stdout + stopped.stderr


@pytest.fixture(scope="module")
def topics_created(secured: SecureBroker) -> subprocess.CompletedProcess[str]:
    return lettingo(secured.client_env("lettingo-topics"), "topics", "create")


@pytest.fixture(scope="module")
def replayed(secured: SecureBroker, topics_created) -> subprocess.CompletedProcess[str]:
    return lettingo(secured.client_env("lettingo-replay"), "replay", str(DATASET), "--limit", "12")


# --- the broker ---------------------------------------------------------------------------------------------


def test_the_secured_broker_keeps_its_secrets_private_and_grants_each_component_its_acls(secured):
    root = secured.home / "kafka-secure"
    passwords = secure.read_passwords(root)
    assert set(passwords) == {*secure.DEFAULT_USERS, NO_READ}
    tls = root / "tls"
    private = [
        root / "credentials.json",
        root / "server.properties",
        tls / "ca.key",
        tls / "client.key",
        tls / "broker.p12",
        *(root / "clients").glob("*.env"),
    ]
    for path in private:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    assert (root / "clients" / "lettingo-worker.env").read_text().count("LETTINGO_KAFKA_SASL_PASSWORD=") == 1
    # SCRAM users are written at format time as salted hashes: no password on any command line or in the log
    logs = "".join(f.read_text(errors="replace") for f in (root / "logs").glob("*.log"))
    assert "SCRAM-SHA-512" in logs and not any(p in logs for p in passwords.values())

    status = lettingo(secured.env, "broker", "status")
    assert status.returncode == 0 and status.stdout.startswith("running") and "secured" in status.stdout
    granted = set(asyncio.run(acls.list_acls(secured.admin())))
    for component in acls.COMPONENTS:
        assert set(acls.component_acls(component, secured.settings)) <= granted, component


def test_broker_acls_prints_what_each_component_needs(secured):
    env = secured.client_env("lettingo-replay")
    shown = lettingo(env, "broker", "acls", "--component", "replay", "--principal", "User:svc-replay")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("# replay:") and len(lines) == 3, shown.stdout
    assert all("User:svc-replay" in line and "ALLOW WRITE" in line for line in lines[1:]), shown.stdout
    assert f"'{secured.settings.topic('interactions')}'" in shown.stdout


def test_settings_mask_the_tls_key_password(secured):
    env = secured.client_env("lettingo-worker")
    shown = lettingo(env, "settings")
    assert shown.returncode == 0, shown.stderr
    assert "LETTINGO_KAFKA_SSL_KEY_PASSWORD=**********" in shown.stdout
    assert "LETTINGO_KAFKA_SASL_PASSWORD=**********" in shown.stdout
    for secret in (env["LETTINGO_KAFKA_SSL_KEY_PASSWORD"], env["LETTINGO_KAFKA_SASL_PASSWORD"]):
        assert secret not in shown.stdout + shown.stderr
    assert f"LETTINGO_KAFKA_SSL_CAFILE={env['LETTINGO_KAFKA_SSL_CAFILE']}" in shown.stdout


# --- every component over SASL_SSL, each as its own user ----------------------------------------------------


def test_topics_create_as_the_topics_user(secured, topics_created):
    assert topics_created.returncode == 0, topics_created.stderr
    assert f"{secured.settings.topic('interactions')} " in topics_created.stdout
    assert "created" in topics_created.stdout


def test_replay_as_the_replay_user(replayed):
    assert replayed.returncode == 0, replayed.stderr
    assert "sent 12 interactions" in replayed.stdout, replayed.stdout


def test_the_worker_applies_replayed_interactions_over_sasl_ssl(secured, replayed, frozen_reader: Path):
    users = {r.key.decode() for r in _read(secured.admin(), secured.settings.topic("interactions"), 4)}
    assert users, "the replay test sends the interactions"
    env = secured.client_env("lettingo-worker")
    worker = WorkerProcess(
        secured.settings,
        secured.home / "worker.log",
        reader_path=frozen_reader,
        **{k.removeprefix("LETTINGO_").lower(): v for k, v in env.items() if k.startswith("LETTINGO_KAFKA_")},
    )
    try:
        worker.start(timeout_s=120)
        changelog = f"{secured.settings.app.id}-user_state-changelog"

        def applied() -> bool:
            return users <= {r.key.decode() for r in _read(secured.admin(), changelog, 4)}

        wait_for("every replayed user's state in the worker's changelog", applied, timeout_s=60, every_s=2)
        assert worker.get("/ready")["ready"]
    finally:
        worker.stop()
    assert env["LETTINGO_KAFKA_SASL_PASSWORD"] not in worker.log_tail(10**7)


def test_the_trainer_consumes_pairs_and_publishes_a_version(secured, topics_created, tmp_path: Path):
    pairs = synthetic_pairs(5)
    worker = secured.as_user("lettingo-worker")  # the worker is who writes preference pairs
    asyncio.run(_produce(worker, "preference-pairs", [(p.user_id.encode(), p.to_bytes()) for p in pairs]))

    trainer = secured.as_user("lettingo-trainer")
    store = BatchStore(tmp_path / "batches")
    batch = asyncio.run(consume_pair_batch(trainer, store, acls.DEFAULT_TRAINER_GROUP, max_pairs=len(pairs), wait_s=30))
    assert batch is not None and sorted(p.pair_id for p in batch.pairs) == sorted(p.pair_id for p in pairs)

    record = ModelVersion(
        name="profile-generator",
        version=1,
        kind="lora",
        uri="file:///registry/v000001",
        sha256={"adapter_model.safetensors": "0" * 64},
        base_model="/models/nano",
        status=ModelStatus.CHAMPION,
    )
    asyncio.run(publish_model_version(trainer, record))
    published = _read(secured.admin(), secured.settings.topic("model-versions"), 1)
    assert [ModelVersion.from_bytes(r.value) for r in published] == [record]


def test_users_forget_as_the_forget_user(secured, topics_created):
    done = lettingo(secured.client_env("lettingo-forget"), "users", "forget", "u-gone")
    assert done.returncode == 0, done.stderr
    assert "u-gone" in done.stdout


# --- refusals: fast, one line, saying what is wrong ---------------------------------------------------------

COMMANDS = {
    "topics": ("lettingo-topics", ["topics", "create"]),
    "replay": ("lettingo-replay", ["replay", str(DATASET), "--limit", "1"]),
    "forget": ("lettingo-forget", ["users", "forget", "u-1"]),
    "train": ("lettingo-trainer", ["train", "--wait", "1"]),
    "worker": ("lettingo-worker", ["worker"]),
}


def test_a_wrong_password_fails_fast_with_one_line_in_every_command(secured, tmp_path: Path):
    """Each command, with a wrong password, exits within seconds with one line naming the user and the settings,
    never the password. The five run at once (each is mostly Python start-up)."""
    wrong = "not-" + uuid.uuid4().hex
    base = build_tiny_policy(tmp_path / "base")  # train checks it has a model to start from before it connects
    started = time.monotonic()
    procs = {}
    for name, (user, args) in COMMANDS.items():
        args = [*args, "--base-model", str(base)] if name == "train" else args
        env = secured.client_env(user) | {"LETTINGO_KAFKA_SASL_PASSWORD": wrong}
        procs[name] = subprocess.Popen(
            ["nice", sys.executable, "-m", "lettingo.cli.main", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == ServiceError.exit_code, f"{name}: {proc.returncode}\n{err}"
        assert len(lines) == 1, f"{name}: {err}"
        assert "refused the SASL login of user" in lines[0] and COMMANDS[name][0] in lines[0], f"{name}: {err}"
        assert "LETTINGO_KAFKA_SASL_PASSWORD" in lines[0] and wrong not in out + err
    assert time.monotonic() - started < 90, "five refused commands took too long: something retried"


def test_a_plaintext_client_on_the_tls_port_fails_clearly(secured):
    env = secured.client_env("lettingo-topics") | {"LETTINGO_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    done = lettingo(env, "topics", "create", timeout=60)
    assert done.returncode == ServiceError.exit_code
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "answered in TLS" in done.stderr and "PLAINTEXT" in done.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ssl_cafile": None}, "set LETTINGO_KAFKA_SSL_CAFILE"),  # the system CAs do not know the local CA
        ({"ssl_certfile": None, "ssl_keyfile": None}, "requires a client certificate"),
        ({"ssl_key_password": SecretStr("wrong")}, "LETTINGO_KAFKA_SSL_KEY_PASSWORD"),
        ({"sasl_mechanism": "SCRAM-SHA-256"}, "does not take the SASL mechanism 'SCRAM-SHA-256'"),
    ],
)
def test_tls_and_sasl_misconfigurations_are_named(secured, change, expected):
    asyncio.run(check_connection(secured.as_user("lettingo-topics")))  # the right settings connect
    with pytest.raises(KafkaAccessError, match=expected):
        asyncio.run(check_connection(secured.as_user("lettingo-topics", **change)))


def test_a_principal_without_read_on_interactions_gets_an_authorization_error(
    secured, topics_created, frozen_reader: Path
):
    """The worker as a user that has every worker ACL but READ on interactions stops (it does not run on
    silently) and says which topic it may not read."""
    settings = secured.settings.replace(app={"id": f"noread-{uuid.uuid4().hex[:8]}"})
    interactions = settings.topic("interactions")
    no_read = [
        acl
        for acl in acls.component_acls("worker", settings, principal=acls.principal_of(NO_READ))
        if not (acl.name == interactions and acl.operation == "READ")
    ]
    asyncio.run(acls.create_acls(secured.admin(), no_read))
    env = secured.client_env(NO_READ, settings)
    worker = WorkerProcess(
        settings,
        secured.home / "noread.log",
        reader_path=frozen_reader,
        **{k.removeprefix("LETTINGO_").lower(): v for k, v in env.items() if k.startswith("LETTINGO_KAFKA_")},
    )
    try:
        with contextlib.suppress(RuntimeError):  # it may stop before or after it first reports ready
            worker.start(timeout_s=120)
        wait_for("the refused worker to stop", lambda: worker.proc.poll() is not None, timeout_s=90)
    finally:
        worker.kill()
    assert worker.proc.returncode != 0
    log = worker.log_tail(10**7)
    assert "TopicAuthorizationFailed" in log and interactions in log, log[-3000:]
    # One line that names the principal and the topic, before Faust starts: no crash traceback.
    assert f"did not authorize {NO_READ!r} on a topic while reading {interactions}" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


# --- helpers ------------------------------------------------------------------------------------------------


async def _produce(settings: StreamSettings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(acks="all", **settings.kafka_client_config())
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(settings.topic(topic), key=key, value=value)
    finally:
        await producer.stop()


def _read(settings: StreamSettings, full_topic: str, partitions: int) -> list:
    async def read() -> list:
        consumer = AIOKafkaConsumer(**settings.kafka_client_config(), group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(full_topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out = []
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    out.extend(records)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())
