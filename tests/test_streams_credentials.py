"""The Kafka security settings reach the Faust worker's broker credentials, and the password never prints."""

from __future__ import annotations

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from lettingo.errors import ConfigError
from streams.kafka.credentials import faust_broker_credentials
from streams.settings import StreamSettings


def sasl(protocol: str) -> StreamSettings:
    return StreamSettings(
        kafka={
            "security_protocol": protocol,
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "svc",
            "sasl_password": "hunter2",
        }
    )


def test_plaintext_has_no_credentials():
    assert faust_broker_credentials(StreamSettings()) is None


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_settings_become_faust_credentials_as_aiokafka_sees_them(protocol):
    app = faust.App("creds-test", broker="kafka://h:1", broker_credentials=faust_broker_credentials(sasl(protocol)))
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    client = sasl(protocol).kafka_client_config()
    for key in ("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
        assert auth[key] == client[key], key
    assert (auth.get("ssl_context") is not None) == protocol.endswith("SSL")
    assert "hunter2" not in repr(app.conf.broker_credentials)


def test_ssl_gives_a_tls_context():
    auth = credentials_to_aiokafka_auth(faust_broker_credentials(StreamSettings(kafka={"security_protocol": "SSL"})))
    assert auth["security_protocol"] == "SSL" and auth["ssl_context"] is not None


def test_sasl_without_a_user_is_refused_when_the_settings_are_built():
    with pytest.raises(ConfigError, match="SASL_SSL needs LETTINGO_KAFKA_SASL_MECHANISM"):
        StreamSettings.load(kafka={"security_protocol": "SASL_SSL"})


def test_sasl_settings_changed_after_validation_are_still_refused():
    unchecked = StreamSettings().replace(kafka={"security_protocol": "SASL_SSL"})  # model_copy does not validate
    with pytest.raises(ValueError, match="SASL"):
        faust_broker_credentials(unchecked)
