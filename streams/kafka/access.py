"""Say in one line why a client cannot use Kafka, and say it fast.

aiokafka reports a wrong password, an untrusted certificate or a plaintext client on a TLS port alike, as
"Unable to bootstrap from [...]", after logging the cause; its consumers and Faust retry some of them for ever.
:func:`check_connection` opens one connection the way every client of the project does (TCP, TLS, SASL) within
``LETTINGO_KAFKA_CONNECT_TIMEOUT_SECONDS`` and turns what failed into a :class:`KafkaAccessError` that names the
setting to fix. :func:`explain_authorization` does the same for a request the broker's ACLs refused.

Secrets never enter a message: only the user name, the mechanism and the setting names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time

from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)

from lettingo.errors import ServiceError
from streams.settings import KafkaTLSSettingsError, StreamSettings

AUTHORIZATION_ERRORS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


class KafkaAccessError(ServiceError, KafkaError):
    """Kafka refused this client (or never answered): one line that says why and which setting to look at.

    A :class:`ServiceError`, so ``lettingo`` prints it as one line; a :class:`KafkaError`, so callers that already
    wrap Kafka errors keep doing so."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        out.append((host.strip("[]"), int(port)) if host else (port, 9092))
    return out


def _who(settings: StreamSettings) -> str:
    protocol = settings.kafka.security_protocol
    if protocol.startswith("SASL"):
        return f"{protocol}, user {settings.kafka.sasl_username!r} ({settings.kafka.sasl_mechanism})"
    return protocol


def explain_connection_error(error: BaseException, settings: StreamSettings, where: str) -> str:
    """One line on why connecting to ``where`` failed, with the setting to look at."""
    protocol = settings.kafka.security_protocol
    tls = protocol.endswith("SSL")
    setting = f"LETTINGO_KAFKA_SECURITY_PROTOCOL={protocol}"
    if isinstance(error, SaslAuthenticationFailed):
        return (
            f"Kafka at {where} refused the SASL login of user {settings.kafka.sasl_username!r} "
            f"({settings.kafka.sasl_mechanism}): wrong user name or password "
            "(LETTINGO_KAFKA_SASL_USERNAME / LETTINGO_KAFKA_SASL_PASSWORD)"
        )
    if isinstance(error, UnsupportedSaslMechanismError):
        return (
            f"Kafka at {where} does not take the SASL mechanism {settings.kafka.sasl_mechanism!r} "
            "(LETTINGO_KAFKA_SASL_MECHANISM)"
        )
    if isinstance(error, IllegalSaslStateError):
        return f"Kafka at {where} does not take a SASL login on this port: is {setting} right?"
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"TLS: the certificate of Kafka at {where} is not trusted ({error.verify_message}): set "
            "LETTINGO_KAFKA_SSL_CAFILE to the CA that signed it"
        )
    if isinstance(error, ssl.SSLError):
        reason = (error.reason or str(error)).upper()
        refused = any(r in reason for r in ("BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN"))
        if "CERTIFICATE_REQUIRED" in reason or (refused and settings.kafka.ssl_certfile is None):
            return (
                f"TLS: Kafka at {where} requires a client certificate (mutual TLS): set "
                "LETTINGO_KAFKA_SSL_CERTFILE and LETTINGO_KAFKA_SSL_KEYFILE"
            )
        if refused:
            return (
                f"TLS: Kafka at {where} refused the client certificate (LETTINGO_KAFKA_SSL_CERTFILE): is it "
                "signed by a CA the broker trusts?"
            )
        if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason or "PACKET_LENGTH" in reason:
            return f"TLS: Kafka at {where} did not answer in TLS: is that a plaintext port ({setting})?"
        return f"TLS handshake with Kafka at {where} failed ({error.reason or error}); {setting}"
    if isinstance(error, ConnectionRefusedError):
        return f"nothing listens at {where} (connection refused): is the broker running, is the address right?"
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        hint = "is that a plaintext port?" if tls else "does that port expect TLS (SSL or SASL_SSL)?"
        return (
            f"Kafka at {where} did not accept the connection within "
            f"{settings.kafka.connect_timeout_seconds:g} s ({_who(settings)}): {hint}"
        )
    if _answered_in_tls(error):
        return (
            f"Kafka at {where} answered in TLS: that port expects SSL or SASL_SSL, not {setting} "
            "(a plaintext client on a TLS port)"
        )
    if tls and isinstance(error, ConnectionResetError | ssl.SSLEOFError):
        return f"Kafka at {where} dropped the TLS handshake: is that a plaintext port ({setting})?"
    if isinstance(error, KafkaConnectionError | ConnectionError | ssl.SSLEOFError):
        hint = (
            "does it require a client certificate (LETTINGO_KAFKA_SSL_CERTFILE / _KEYFILE)?"
            if tls
            else f"does that port expect TLS ({setting})?"
        )
        return f"Kafka at {where} closed the connection during the handshake ({_who(settings)}): {hint}"
    if isinstance(error, OSError):
        return f"cannot connect to Kafka at {where}: {error.strerror or error}"
    return f"cannot connect to Kafka at {where} ({_who(settings)}): {type(error).__name__}: {error}"


async def check_connection(settings: StreamSettings) -> None:
    """Open (and close) one connection to a bootstrap server as the project's clients do: TCP, then TLS and the
    SASL login when the settings ask for them. Raise :class:`KafkaAccessError` (one line) when no server
    accepts it within ``kafka_connect_timeout_seconds``."""
    protocol = settings.kafka.security_protocol
    if protocol.startswith("SASL") and not (
        settings.kafka.sasl_mechanism and settings.kafka.sasl_username and settings.kafka.sasl_password
    ):
        raise KafkaAccessError(
            f"LETTINGO_KAFKA_SECURITY_PROTOCOL={protocol} needs LETTINGO_KAFKA_SASL_MECHANISM, _USERNAME and _PASSWORD"
        )
    try:
        config = settings.kafka_client_config()
    except KafkaTLSSettingsError as e:
        raise KafkaAccessError(str(e)) from e
    timeout_s = settings.kafka.connect_timeout_seconds
    reasons = []
    for host, port in _hosts(settings.bootstrap):
        where = f"{host}:{port}"
        try:
            # aiokafka logs the failure it then raises: this one line replaces it
            with _quiet("aiokafka"):
                conn = await asyncio.wait_for(
                    create_conn(
                        host,
                        port,
                        request_timeout_ms=int(timeout_s * 1000),
                        security_protocol=protocol,
                        ssl_context=config.get("ssl_context"),
                        sasl_mechanism=config.get("sasl_mechanism"),
                        sasl_plain_username=config.get("sasl_plain_username"),
                        sasl_plain_password=config.get("sasl_plain_password"),
                    ),
                    timeout_s,
                )
        except (TimeoutError, OSError, KafkaError) as e:
            reasons.append(explain_connection_error(_cause(e), settings, where))
            continue
        conn.close()
        return
    raise KafkaAccessError(reasons[0] if len(reasons) == 1 else "; ".join(reasons))


def _answered_in_tls(error: BaseException) -> bool:
    """A plaintext client read a TLS record (an alert 0x15 or handshake 0x16, version 0x03xx) as a Kafka
    response's size: aiokafka then waits for hundreds of megabytes that never come."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, asyncio.IncompleteReadError) and seen.expected is not None:
            return (seen.expected >> 16) in (0x1503, 0x1603)
        seen = seen.__cause__ or seen.__context__
    return False


def _cause(error: BaseException) -> BaseException:
    """The TLS error under aiokafka's 'connection closed', when there is one."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error


@contextlib.contextmanager
def _quiet(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def explain_authorization(error: KafkaError, settings: StreamSettings, doing: str) -> KafkaAccessError | None:
    """A :class:`KafkaAccessError` for an ACL refusal (None for any other error): who was refused doing what."""
    if not isinstance(error, AUTHORIZATION_ERRORS):
        return None
    who = settings.kafka.sasl_username or "this client"
    kind = {
        TopicAuthorizationFailedError: "a topic",
        GroupAuthorizationFailedError: "a consumer group",
        ClusterAuthorizationFailedError: "the cluster",
        TransactionalIdAuthorizationFailed: "a transactional id",
    }[type(error)]
    return KafkaAccessError(
        f"Kafka at {settings.bootstrap} did not authorize {who!r} on {kind} while {doing} ({error}): "
        "the principal lacks an ACL (README, 'Kafka security')"
    )


async def check_reads(settings: StreamSettings, topics: list[str], timeout_s: float = 5.0) -> None:
    """Fetch once from each topic (no consumer group): a principal without READ on one gets one line naming it,
    before a worker starts (Faust's own refusal comes later, among crash tracebacks)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **settings.kafka_client_config(), group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        for topic in topics:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            deadline = time.monotonic() + timeout_s
            try:
                await consumer.seek_to_beginning(tp)
                # A fetch the broker answered without an error sets the partition's poll timestamp, records or
                # none: an empty topic is readable after one fetch, not after the whole timeout.
                while consumer.last_poll_timestamp(tp) is None and time.monotonic() < deadline:
                    await consumer.getmany(tp, timeout_ms=100, max_records=1)
            except KafkaError as e:
                refused = explain_authorization(e, settings, f"reading {topic}")
                if refused is None:
                    raise
                raise refused from e
    finally:
        await consumer.stop()
