"""Settings: environment first, then the command line; clear errors at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.settings import from_env

pytestmark = pytest.mark.unit


def test_defaults_and_overrides() -> None:
    s = from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9093", "POPSTREAM_PARTITIONS": "8"},
                 topic_prefix="prod.", web_port=None)
    assert (s.bootstrap_servers, s.partitions, s.topic_prefix, s.web_port) == (
        "k1:9092,k2:9093", 8, "prod.", 6066)
    assert s.security.aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_sasl_settings_come_from_the_environment_and_are_not_printed() -> None:
    s = from_env({"KAFKA_SECURITY_PROTOCOL": "sasl_plaintext", "KAFKA_SASL_MECHANISM":
                  "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "hunter2"})
    kwargs = s.security.aiokafka_kwargs()
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_password"] == "hunter2"
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "expected host:port"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"},
         "needs KAFKA_SASL_USERNAME"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI",
          "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent.pem"},
         "does not name a file"),
        ({"POPSTREAM_PARTITIONS": "many"}, "must be an integer"),
        ({"POPSTREAM_PARTITIONS": "0"}, "partitions must be 1..10000"),
        ({"POPSTREAM_STORE": "redis://"}, "POPSTREAM_STORE"),
        ({"POPSTREAM_TOPIC_PREFIX": "a b"}, "POPSTREAM_TOPIC_PREFIX"),
        ({"POPSTREAM_SESSION_TIMEOUT": "2"}, "POPSTREAM_SESSION_TIMEOUT"),
        ({"POPSTREAM_MAX_MESSAGE_BYTES": "10"}, "POPSTREAM_MAX_MESSAGE_BYTES"),
        ({"POPSTREAM_INSTANCE_ID": "worker 1"}, "POPSTREAM_INSTANCE_ID"),
    ],
)
def test_bad_settings_fail_with_a_precise_message(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env(env)


def test_tls_files_must_exist_and_go_together(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="go together"):
        from_env({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": str(cert)})


def test_instance_id_is_optional_and_kept() -> None:
    assert from_env({}).instance_id is None
    assert from_env({"POPSTREAM_INSTANCE_ID": ""}).instance_id is None
    assert from_env({"POPSTREAM_INSTANCE_ID": "worker-1"}).instance_id == "worker-1"
