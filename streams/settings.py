"""The stream layer's settings: the core's (:class:`lettingo.settings.Settings`) and the infrastructure sections,
Kafka, the local broker, topics, the Faust app and the worker's web server, read from the documented
``LETTINGO_*`` variables (``LETTINGO_KAFKA_BOOTSTRAP`` is ``settings.kafka.bootstrap``).

The Kafka section is validated when built: a SASL protocol without a mechanism, user and password, or a TLS file
that cannot be read, stops the entry point with one line naming the variable, before anything connects.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from lettingo.errors import ConfigError
from lettingo.settings import Section, Settings, _section, env, section_config


class KafkaTLSSettingsError(ConfigError):
    """A TLS setting names a file that cannot be read, or the client key's password is wrong."""


class KafkaSettings(Section):
    """How clients reach the Kafka cluster, and how a worker stays in its consumer group."""

    model_config = section_config("KAFKA_")

    bootstrap: str | None = Field(
        None,
        description="host:port of a running broker; unset means the local broker started by `lettingo broker` "
        "(and then nothing is started when it is set).",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: str | None = Field(None, description="e.g. PLAIN or SCRAM-SHA-512 when using SASL.")
    sasl_username: str | None = Field(None, description="SASL user.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (a secret: never printed).")
    ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CA(s) that signed the brokers' certificates; unset: the system's trusted CAs.",
    )
    ssl_certfile: Path | None = Field(
        None, description="PEM client certificate (chain) for mutual TLS; unset: no client certificate."
    )
    ssl_keyfile: Path | None = Field(
        None, description="PEM private key of the client certificate; unset: the key is in the certificate file."
    )
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted client key (a secret: never printed)."
    )
    connect_timeout_seconds: float = Field(
        15.0,
        gt=0,
        description="Longest wait for a broker to accept a client (TCP, TLS, SASL) before a command stops with one "
        "line that says what failed.",
    )
    session_timeout_seconds: float = Field(
        10.0,
        ge=6,
        le=300,
        description="A worker silent this long leaves the group and its partitions move to the others (6 to 300; "
        "the broker's `group.min.session.timeout.ms` is 6 s by default).",
    )
    heartbeat_seconds: float = Field(
        2.0, gt=0, description="Consumer heartbeat interval: under a third of the session timeout."
    )
    delivery_timeout_seconds: float = Field(
        120.0,
        gt=0,
        description="How long the commands that send records (`replay`, `users forget`) keep retrying one the "
        "broker has not taken (a broker restart, a leader election) before they fail; Kafka's own producer default "
        "is 120 s.",
    )
    libs: Path | None = Field(
        None, description="Folder of the Kafka jars fetched from Maven Central; unset means `<home>/kafka/libs`."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        protocol = self.security_protocol
        if protocol.startswith("SASL") and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"LETTINGO_KAFKA_SECURITY_PROTOCOL={protocol} needs LETTINGO_KAFKA_SASL_MECHANISM, _USERNAME and "
                "_PASSWORD"
            )
        if self.heartbeat_seconds * 3 > self.session_timeout_seconds:
            raise ValueError(
                f"LETTINGO_KAFKA_HEARTBEAT_SECONDS={self.heartbeat_seconds} must be under a third of "
                f"LETTINGO_KAFKA_SESSION_TIMEOUT_SECONDS={self.session_timeout_seconds}"
            )
        if protocol.endswith("SSL"):
            self.ssl_context()  # unreadable files and a wrong key password stop here, before any connection
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for SSL / SASL_SSL: hostnames checked against the CA file's CAs (the system's when
        unset), with the client certificate for mutual TLS when one is set. A file that cannot be read or a wrong
        key password raises :class:`KafkaTLSSettingsError`, naming the setting."""
        cafile = self.ssl_cafile
        try:
            context = ssl.create_default_context(cafile=None if cafile is None else str(cafile))
        except (OSError, ssl.SSLError) as e:
            raise KafkaTLSSettingsError(f"LETTINGO_KAFKA_SSL_CAFILE={cafile}: not a readable PEM CA file ({e})") from e
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise KafkaTLSSettingsError("LETTINGO_KAFKA_SSL_KEYFILE is set without LETTINGO_KAFKA_SSL_CERTFILE")
        if self.ssl_certfile is not None:
            password = self.ssl_key_password
            try:
                context.load_cert_chain(
                    str(self.ssl_certfile),
                    None if self.ssl_keyfile is None else str(self.ssl_keyfile),
                    # a callable, never None: with None, OpenSSL would prompt on the terminal for a key's password
                    password=(lambda: "") if password is None else password.get_secret_value(),
                )
            except (OSError, ssl.SSLError) as e:
                files = f"LETTINGO_KAFKA_SSL_CERTFILE={self.ssl_certfile}"
                if self.ssl_keyfile is not None:
                    files += f", LETTINGO_KAFKA_SSL_KEYFILE={self.ssl_keyfile}"
                # ssl's message for a wrong key password is "[SSL] PEM lib": say what it usually means
                hint = (
                    " (an encrypted key needs LETTINGO_KAFKA_SSL_KEY_PASSWORD: is it set and right?)"
                    if isinstance(e, ssl.SSLError)
                    else ""
                )
                raise KafkaTLSSettingsError(f"cannot load the client certificate {files}{hint}: {e}") from e
        return context


class BrokerSettings(Section):
    """The local broker that `lettingo broker` runs."""

    model_config = section_config("BROKER_")

    secure: bool = Field(
        False,
        description="`lettingo broker` runs the secured local broker (SASL_SSL with SCRAM-SHA-512, mutual TLS from "
        "a local CA, ACLs) under `<home>/kafka-secure`.",
    )
    port: int = Field(19092, ge=1, le=65535, description="Client port of the local broker.")
    controller_port: int = Field(
        19093,
        ge=1,
        le=65535,
        validation_alias=env("CONTROLLER_PORT"),
        description="KRaft controller port of the local broker.",
    )
    heap: str = Field("512m", description="Java heap (-Xmx) of the local broker.")


class TopicSettings(Section):
    """The topics created on the cluster."""

    model_config = section_config("TOPIC_")

    partitions: int = Field(4, ge=1, description="Partitions of every user-keyed topic (they must match).")
    replication: int = Field(1, ge=1, description="Replication factor of created topics.")
    prefix: str = Field("", description="Prefix for every topic name, to share a cluster.")


class AppSettings(Section):
    """The Faust app of the workers: its consumer group, tables and processing guards."""

    model_config = section_config("APP_")

    id: str = Field("lettingo", description="Faust app id (consumer group and changelog prefix).")
    table_standby_replicas: int = Field(
        1,
        ge=0,
        validation_alias=env("TABLE_STANDBY_REPLICAS"),
        description="Standby copies of each table partition kept warm on other workers, so a failover does not "
        "restore from the changelog (no effect with one worker).",
    )
    poison_retries: int = Field(
        3,
        ge=1,
        validation_alias=env("POISON_RETRIES"),
        description="Tries of an event whose processing raises before it is dead-lettered (`processing_failed`) "
        "and skipped.",
    )
    stall_seconds: float = Field(
        60.0,
        gt=0,
        validation_alias=env("STALL_SECONDS"),
        description="A partition with waiting messages and no applied-offset progress for this long is stalled: "
        "`/ready` answers 503 and `lettingo_partition_stalled` is 1.",
    )
    bulk_restore: bool = Field(
        True,
        description="Restore table changelog partitions (active and standby) with a plain Kafka consumer and RocksDB "
        "write batches before Faust's per-record recovery reads what is left (`streams.faust_adapter.BulkRestore`); "
        "false: Faust's recovery alone, about 100 µs of CPU a record.",
    )
    bulk_ingest: bool = Field(
        True,
        description="The ingest and task evaluation agents take each fetch's records of a partition (`interactions`, "
        "`rated-events`) as one chunk (`streams.faust_adapter.BulkConsumer`) instead of Faust's per-event stream "
        "(while the reader loads, a rated event with an open candidate to test waits for it, and with it the "
        "worker's fetches); false: `take_events`.",
    )
    recovery_buffer: int = Field(
        1000,
        ge=1,
        description="Changelog records a table restore writes to RocksDB in one batch (Faust's "
        "`recovery_buffer_size`; a standby replica writes at most `streams.tables.STANDBY_BUFFER`, 20, at once). The "
        "restore is bound by Faust's Python work per record, not by RocksDB: larger batches measured no faster "
        "(`python -m bench.state`).",
    )
    stream_buffer: int = Field(
        4096,
        ge=1,
        description="Messages a worker reads ahead of processing, per stream and for the changelog restore queue "
        "(Faust's `stream_buffer_maxsize`); more holds more messages in memory.",
    )
    fetch_max_mib: int = Field(
        1,
        ge=1,
        description="Most data the broker returns per partition in one fetch, MiB (Faust's `consumer_max_fetch_size`); "
        "at least the largest message.",
    )
    fetch_min_bytes: int = Field(
        65536,
        ge=1,
        description="New data the broker gathers before it answers a fetch of the worker's consumer (Kafka's "
        "`fetch.min.bytes`, which Faust leaves at 1): under a trickle of events each fetch would bring a few records, "
        "and its round trip costs the worker more CPU than they do.",
    )
    fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        le=10_000,  # far below the consumer's request timeout (Faust's 90 s), which a held fetch must not reach
        description="Longest the broker holds a fetch for `fetch_min_bytes` (Kafka's `fetch.max.wait.ms`; Faust "
        "passes 1,500): the most a trickle of events waits per topic it crosses.",
    )
    switch_interval_ms: float = Field(
        1.0,
        gt=0,
        le=100,
        description="How long a worker thread holds Python's GIL before another may take it, ms (Python's "
        "`sys.setswitchinterval`: 5). Generation runs in a thread beside the event loop: while a batch generates, "
        "each wake-up of the loop (a fetch, a produce, the next requests) waits up to this long for the GIL.",
    )
    rocksdb_write_buffer_mib: int = Field(
        8,
        ge=1,
        description="Size of one RocksDB memtable, MiB, in each table partition's database (Faust: 64).",
    )
    rocksdb_write_buffers: int = Field(
        2,
        ge=1,
        description="Memtables one table partition's database keeps before writes stall (Faust: 3).",
    )
    rocksdb_block_cache_mib: int = Field(
        64,
        ge=1,
        description="RocksDB block cache of the worker, MiB, shared by every database it opens (one per table and "
        "partition it holds, active or standby; Faust: 2048 per database).",
    )
    rocksdb_memtables_mib: int = Field(
        64,
        ge=1,
        description="All RocksDB memtables of the worker together, MiB (RocksDB's write buffer manager): past it the "
        "largest is flushed to disk. A memtable is also flushed when it reaches the write buffer size.",
    )


class WebSettings(Section):
    """The worker's web server (profiles, health, metrics)."""

    model_config = section_config("WEB_")

    port: int = Field(6066, ge=1, le=65535, description="Worker web port: profiles, health, /metrics.")
    profile_token: SecretStr | None = Field(
        None,
        description="Bearer token `/users/{id}/profile` requires (a secret, never printed); unset: open. `/health`, "
        "`/ready`, `/metrics` stay open.",
    )
    host: str | None = Field(
        None,
        description="Host name other workers use to reach this one's web server (Faust routes a profile request to "
        "the worker owning the user's partition); unset: the bind address, or the machine's host name when bound "
        "to `0.0.0.0`.",
    )
    bind: str = Field(
        "127.0.0.1",
        description="Address the worker's web server binds: loopback on a laptop, `0.0.0.0` in containers.",
    )


class CacheSettings(Section):
    """In-process caches of a worker's task evaluation, each bounded in memory; the least recently used entry is
    evicted first. Their fill shows as `lettingo_cache_bytes` against `lettingo_cache_max_bytes`; the three
    together, 160 MiB by default, are about 5 % of a worker's 3 GiB memory request (deploy/k8s)."""

    model_config = section_config("CACHE_")

    text_vectors_mib: int = Field(
        64,
        ge=1,
        description="Sentence vectors of texts not cached on disk (profile chunks) kept in memory, MiB: about "
        "36,000 vectors of 1.8 KB.",
    )
    profile_vectors_mib: int = Field(
        64,
        ge=1,
        description="Chunk vectors of the profiles scored lately, keyed by the profile text, MiB: about 6,000 "
        "profiles of 1 KB in 6 chunks.",
    )
    sent_pairs_mib: int = Field(
        32,
        ge=1,
        description="The (candidate, rated event) pairs task evaluation sent and the candidates' acknowledged "
        "rewards, MiB, half each: about 48,000 pairs and 78,000 counts; a forgotten pair may be scored again "
        "(its reward counted once).",
    )


class StreamSettings(Settings):
    """The core's settings and the stream layer's infrastructure."""

    kafka: KafkaSettings = _section(KafkaSettings)
    broker: BrokerSettings = _section(BrokerSettings)
    topics: TopicSettings = _section(TopicSettings)
    app: AppSettings = _section(AppSettings)
    web: WebSettings = _section(WebSettings)
    cache: CacheSettings = _section(CacheSettings)

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap or f"127.0.0.1:{self.broker.port}"

    @property
    def uses_local_broker(self) -> bool:
        return self.kafka.bootstrap is None

    def topic(self, name: str) -> str:
        return f"{self.topics.prefix}{name}"

    def kafka_ssl_context(self) -> ssl.SSLContext:
        return self.kafka.ssl_context()

    def kafka_client_config(self) -> dict[str, object]:
        """Keyword arguments shared by aiokafka clients (and mapped onto Faust's broker settings)."""
        kafka = self.kafka
        cfg: dict[str, object] = {"bootstrap_servers": self.bootstrap, "security_protocol": kafka.security_protocol}
        if kafka.security_protocol.endswith("SSL"):
            cfg["ssl_context"] = kafka.ssl_context()
        if kafka.sasl_mechanism:
            cfg["sasl_mechanism"] = kafka.sasl_mechanism
            cfg["sasl_plain_username"] = kafka.sasl_username
            cfg["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        return cfg
