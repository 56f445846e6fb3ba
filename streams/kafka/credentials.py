"""The Kafka security settings (``LETTINGO_KAFKA_SECURITY_PROTOCOL`` / ``_SASL_*``) as Faust's broker credentials,
so the Faust worker's own consumers and producers authenticate like every aiokafka client of the project."""

from __future__ import annotations

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from streams.settings import StreamSettings


def faust_broker_credentials(settings: StreamSettings) -> CredentialsT | None:
    """None for PLAINTEXT; SSL: a TLS context; SASL_PLAINTEXT / SASL_SSL: the SASL user (and TLS for SASL_SSL)."""
    protocol = settings.kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = settings.kafka_ssl_context() if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return SSLCredentials(ssl_context)
    if not settings.kafka.sasl_mechanism or not settings.kafka.sasl_username or settings.kafka.sasl_password is None:
        raise ValueError(f"{protocol} needs LETTINGO_KAFKA_SASL_MECHANISM, _USERNAME and _PASSWORD")
    return SASLCredentials(
        username=settings.kafka.sasl_username,
        password=settings.kafka.sasl_password.get_secret_value(),
        ssl_context=ssl_context,
        mechanism=settings.kafka.sasl_mechanism,
    )
