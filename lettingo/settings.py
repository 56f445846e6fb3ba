"""One typed settings object, read from ``LETTINGO_*`` environment variables (and a ``.env`` file).

Every field is documented in the README's settings table; ``lettingo settings`` prints the values in force
(secrets masked).
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from lettingo.errors import ConfigError
from lettingo.records import InputLimits


class KafkaTLSSettingsError(ConfigError):
    """A TLS setting names a file that cannot be read, or the client key's password is wrong."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LETTINGO_", env_file=".env", extra="ignore")

    # --- where things live ---
    home: Path = Field(Path(".lettingo"), description="Folder for the broker's data, models, registry, worker state.")
    dataset: Path = Field(Path("../shared/data/ml-latest-small"), description="Dataset used by the demo and replay.")
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as plain text, or one JSON object a line with user_id / profile_id fields."
    )
    cache_dir: Path | None = Field(
        None, description="Folder of the sentence encoder's embedding cache; unset means <home>/cache."
    )

    # --- Kafka ---
    kafka_bootstrap: str | None = Field(
        None, description="host:port of a running broker; unset means the local broker started by `lettingo broker`."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: str | None = Field(None, description="e.g. PLAIN or SCRAM-SHA-512 when using SASL.")
    kafka_sasl_username: str | None = Field(None, description="SASL user.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (a secret: never printed).")
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM file of the CA(s) that signed the brokers' certificates; unset: the system's CAs."
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate (chain) for mutual TLS; unset: no client certificate."
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM private key of the client certificate; unset: the key is in the certificate file."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted client key (a secret: never printed)."
    )
    kafka_connect_timeout_seconds: float = Field(
        15.0,
        gt=0,
        description="Longest wait for a broker to accept a client (TCP, TLS and SASL) before the "
        "command stops with one line that says what failed.",
    )
    broker_secure: bool = Field(
        False,
        description="`lettingo broker` runs the secured local broker (SASL_SSL with SCRAM-SHA-512, mutual "
        "TLS from a local CA, ACLs) under <home>/kafka-secure instead of the plaintext one.",
    )
    broker_port: int = Field(19092, ge=1, le=65535, description="Client port of the local broker.")
    controller_port: int = Field(19093, ge=1, le=65535, description="KRaft controller port of the local broker.")
    kafka_libs: Path | None = Field(
        None, description="Folder of the Kafka jars fetched from Maven Central; unset means <home>/kafka/libs."
    )
    broker_heap: str = Field("512m", description="Java heap (-Xmx) of the local broker.")
    topic_partitions: int = Field(4, ge=1, description="Partitions of every user-keyed topic (they must match).")
    topic_replication: int = Field(1, ge=1, description="Replication factor of created topics.")
    topic_prefix: str = Field("", description="Prefix for every topic name, to share a cluster.")
    max_message_bytes: int = Field(65_536, ge=1024, description="Larger input messages go to dead-letters.")
    input_ts_min: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Earliest input timestamp (epoch seconds); earlier ones go to "
        "dead-letters (0: any non-negative time, so relative-time datasets replay).",
    )
    input_ts_max_ahead_seconds: float = Field(
        86_400.0,
        ge=0,
        allow_inf_nan=False,
        description="How far past the worker's wall clock an input timestamp may be (producer clock skew).",
    )
    rating_min: float = Field(
        0.0, allow_inf_nan=False, description="Lowest rating accepted on input (interactions, rating feedback)."
    )
    rating_max: float = Field(
        5.0, allow_inf_nan=False, description="Highest rating accepted on input; set the pair to your data's scale."
    )

    # --- worker ---
    app_id: str = Field("lettingo", description="Faust app id (consumer group and changelog prefix).")
    web_port: int = Field(6066, ge=1, le=65535, description="Worker web port: profiles, health, /metrics.")
    web_profile_token: SecretStr | None = Field(
        None,
        description="Bearer token the profile endpoint requires (a secret); unset: the endpoint is open. "
        "/health, /ready and /metrics stay open.",
    )
    web_host: str | None = Field(
        None,
        description="Host name other workers use to reach this one's web server (Faust routes a profile "
        "request to the worker that owns the user's partition); unset: the bind address, or this machine's host "
        "name when bound to all addresses.",
    )
    web_bind: str = Field(
        "127.0.0.1", description="Address the worker's web server binds: loopback on a laptop, 0.0.0.0 in containers."
    )
    worker_policy: str = Field("writer:combined", description="Generator spec served until a model version arrives.")
    worker_history_window: int = Field(10, ge=1, description="Recent interactions kept per user (h_u).")
    worker_history_max: int = Field(70, ge=1, description="Older interactions kept per user (H_u, bounded).")
    worker_cold_start_after: int = Field(5, ge=1, description="Interactions before a user's first profile.")
    drift_threshold: float = Field(0.15, ge=0, le=1, description="Jensen-Shannon divergence (base 2) that is drift.")
    drift_min_new_events: int = Field(
        5, ge=1, description="New interactions since the last profile before drift counts."
    )
    drift_cooldown_seconds: float = Field(86_400.0, ge=0, description="Event time between two drift requests.")
    seen_events_max: int = Field(20_000, ge=1, description="Event ids remembered per user for idempotent ingest.")
    explore_policy: str = Field(
        "writer:genres,titles,era,strictness,combined,poor", description="Generator spec that explores candidates."
    )
    explore_rate: float = Field(0.5, ge=0, le=1, description="Share of regenerations that also explore K candidates.")
    explore_k: int = Field(4, ge=0, description="Candidates explored per exploring regeneration.")
    regen_batch_size: int = Field(16, ge=1, description="Profile requests generated in one model call at most.")
    regen_batch_seconds: float = Field(0.5, gt=0, description="Longest wait to fill a regeneration batch.")
    regen_timeout_seconds: float = Field(60.0, gt=0, description="A generation batch slower than this has failed.")
    regen_max_attempts: int = Field(5, ge=1, description="Attempts for one profile request before it is dead-lettered.")
    regen_retries: int = Field(
        3, ge=1, description="Tries of one generation batch (with backoff) before it is re-queued."
    )
    regen_backoff_seconds: float = Field(
        0.5, ge=0, description="First wait between tries; doubles each try (max 30 s)."
    )
    serve_temperature: float = Field(0.0, ge=0, description="Sampling temperature of the served profile (0: greedy).")
    explore_temperature: float = Field(
        1.0, ge=0, description="Sampling temperature of explored candidates (paper: 1.0)."
    )
    max_new_tokens: int = Field(96, ge=1, description="Longest generated profile, in model tokens.")
    feedback_window_seconds: float = Field(30.0, gt=0, description="How long an impression waits for a click.")
    pairs_min_rewards: int = Field(2, ge=1, description="Rewards each candidate needs before it enters a pair.")
    pairs_max_per_round: int = Field(4, ge=1, description="Preference pairs kept per explored round (widest gaps).")
    pairs_min_gap: float = Field(0.0, ge=0, description="Chosen mean reward must beat rejected by more than this.")
    reader_path: Path | None = Field(
        None,
        description="Frozen embedding reader (f_Rec) folder for task evaluation; unset: build or reuse the cached "
        "reader for the dataset under <home>/models.",
    )
    eval_draws: int = Field(5, ge=1, description="Negative draws per new rated item in streamed task evaluation.")
    eval_negatives: int = Field(9, ge=1, description="Popularity-matched unseen items ranked against the new one.")
    eval_batch_size: int = Field(64, ge=1, description="Rated events scored in one task-evaluation batch at most.")

    # --- a fleet of workers (one consumer group) ---
    table_standby_replicas: int = Field(
        1,
        ge=0,
        description="Standby copies of each table partition kept warm on other workers, so a failover "
        "does not restore from the changelog (no effect with one worker).",
    )
    kafka_session_timeout_seconds: float = Field(
        10.0,
        ge=6,
        le=300,
        description="A worker silent this long leaves the group and its partitions move to the "
        "others (the broker's group.min.session.timeout.ms is 6 s by default).",
    )
    kafka_heartbeat_seconds: float = Field(
        2.0, gt=0, description="Heartbeat interval; under a third of the session timeout."
    )

    # --- bounds on what a worker keeps (each value of each table; what is dropped is counted) ---
    max_state_bytes: int = Field(
        512 * 1024,
        ge=128 * 1024,
        le=900_000,
        description="Largest table value a worker stores; a user's oldest history is dropped to fit under it.",
    )
    max_attribute_keys: int = Field(
        256, ge=1, description="Distinct item attributes counted per user (rarest dropped)."
    )
    max_event_attributes: int = Field(32, ge=1, description="Attributes kept per history event.")
    max_pending_impressions: int = Field(
        64, ge=1, description="Open impressions per user awaiting clicks (oldest dropped)."
    )
    max_impression_items: int = Field(100, ge=1, description="Item ids kept per open impression.")
    max_early_clicks: int = Field(
        256, ge=1, description="Clicks per user waiting for their impression (oldest dropped)."
    )
    max_round_candidates: int = Field(16, ge=2, description="Candidates filed per explored round (later ones dropped).")
    max_candidate_rewards: int = Field(512, ge=1, description="Rewards counted per candidate (later ones dropped).")
    poison_retries: int = Field(
        3, ge=1, description="Tries of an event whose processing raises before it is dead-lettered and skipped."
    )
    stall_seconds: float = Field(
        60.0,
        gt=0,
        description="A partition with waiting messages and no applied offset progress for this long "
        "is stalled: /ready fails and lettingo_partition_stalled is 1.",
    )

    # --- trainer ---
    trainer_metrics_port: int = Field(
        6067, ge=1, le=65535, description="Port of `lettingo train --watch`'s /metrics (bound to LETTINGO_WEB_BIND)."
    )
    gate_users: int = Field(60, ge=1, description="Validation users on whom the gate compares candidate and champion.")

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.broker_port}"

    @property
    def uses_local_broker(self) -> bool:
        return self.kafka_bootstrap is None

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def path(self, *parts: str) -> Path:
        return self.home.joinpath(*parts)

    @property
    def cache_path(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.path("cache")

    def input_limits(self) -> InputLimits:
        """What :func:`lettingo.records.decode_record` accepts on input: size, timestamps, rating scale."""
        return InputLimits(
            max_bytes=self.max_message_bytes,
            ts_min=self.input_ts_min,
            ts_max_ahead_s=self.input_ts_max_ahead_seconds,
            rating_min=self.rating_min,
            rating_max=self.rating_max,
        )

    def kafka_ssl_context(self) -> ssl.SSLContext:
        """The TLS context for SSL / SASL_SSL: hostnames checked against the CA file's CAs (the system's when
        unset), with the client certificate for mutual TLS when one is set. A file that cannot be read or a wrong
        key password raises :class:`KafkaTLSSettingsError`, naming the setting."""
        cafile = self.kafka_ssl_cafile
        try:
            context = ssl.create_default_context(cafile=None if cafile is None else str(cafile))
        except (OSError, ssl.SSLError) as e:
            raise KafkaTLSSettingsError(f"LETTINGO_KAFKA_SSL_CAFILE={cafile}: not a readable PEM CA file ({e})") from e
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise KafkaTLSSettingsError("LETTINGO_KAFKA_SSL_KEYFILE is set without LETTINGO_KAFKA_SSL_CERTFILE")
        if self.kafka_ssl_certfile is not None:
            password = self.kafka_ssl_key_password
            try:
                context.load_cert_chain(
                    str(self.kafka_ssl_certfile),
                    None if self.kafka_ssl_keyfile is None else str(self.kafka_ssl_keyfile),
                    # a callable, never None: with None, OpenSSL would prompt on the terminal for a key's password
                    password=(lambda: "") if password is None else password.get_secret_value(),
                )
            except (OSError, ssl.SSLError) as e:
                files = f"LETTINGO_KAFKA_SSL_CERTFILE={self.kafka_ssl_certfile}"
                if self.kafka_ssl_keyfile is not None:
                    files += f", LETTINGO_KAFKA_SSL_KEYFILE={self.kafka_ssl_keyfile}"
                # ssl's message for a wrong key password is "[SSL] PEM lib": say what it usually means
                hint = (
                    " (an encrypted key needs LETTINGO_KAFKA_SSL_KEY_PASSWORD: is it set and right?)"
                    if isinstance(e, ssl.SSLError)
                    else ""
                )
                raise KafkaTLSSettingsError(f"cannot load the client certificate {files}{hint}: {e}") from e
        return context

    def kafka_client_config(self) -> dict[str, object]:
        """Keyword arguments shared by aiokafka clients (and mapped onto Faust's broker settings)."""
        cfg: dict[str, object] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.endswith("SSL"):
            cfg["ssl_context"] = self.kafka_ssl_context()
        if self.kafka_sasl_mechanism:
            cfg["sasl_mechanism"] = self.kafka_sasl_mechanism
            cfg["sasl_plain_username"] = self.kafka_sasl_username
            cfg["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return cfg


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
