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
        ({"POPSTREAM_PARTITIONS": "0"}, "POPSTREAM_PARTITIONS .*must be 1..10000"),
        ({"POPSTREAM_REPLICATION": "0"}, "POPSTREAM_REPLICATION"),
        ({"POPSTREAM_STORE": "redis://"}, "POPSTREAM_STORE"),
        ({"POPSTREAM_STORE": "memory"}, "POPSTREAM_STORE .*must be memory:// or rocksdb://"),
        ({"POPSTREAM_STORE": "rocksdb"}, "POPSTREAM_STORE"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "localhost:99999"}, "port must be 1..65535, got 99999"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "localhost:0"}, "port must be 1..65535, got 0"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "tcp://k:9092"}, "expected host:port"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,"}, "expected host:port"),
        ({"POPSTREAM_WEB_PORT": "0"}, "POPSTREAM_WEB_PORT .*must be 1..65535, got 0"),
        ({"POPSTREAM_WEB_PORT": "65536"}, "POPSTREAM_WEB_PORT"),
        ({"POPSTREAM_WEB_PORT": "tcp://10.0.0.11:80"}, "POPSTREAM_WEB_PORT must be an integer"),
        ({"POPSTREAM_WEB_HOST": "tcp://10.0.0.11:80"}, "POPSTREAM_WEB_HOST must be an IP"),
        ({"POPSTREAM_WEB_HOST": "a host"}, "POPSTREAM_WEB_HOST"),
        ({"POPSTREAM_FAST_PATH": "maybe"}, "POPSTREAM_FAST_PATH must be 1/0, true/false"),
        ({"POPSTREAM_FAST_PATH": "2"}, "POPSTREAM_FAST_PATH"),
        ({"POPSTREAM_SESSION_TIMEOUT": "seven"}, "POPSTREAM_SESSION_TIMEOUT must be a number"),
        ({"POPSTREAM_SESSION_TIMEOUT": "nan"}, "POPSTREAM_SESSION_TIMEOUT must be a finite"),
        ({"POPSTREAM_SESSION_TIMEOUT": "5.9"}, "POPSTREAM_SESSION_TIMEOUT must be 6..1800"),
        ({"POPSTREAM_FUTURE_HORIZON": "59"}, "POPSTREAM_FUTURE_HORIZON must be 60..31622400"),
        ({"POPSTREAM_FUTURE_HORIZON": "31622401"}, "POPSTREAM_FUTURE_HORIZON"),
        ({"POPSTREAM_FUTURE_HORIZON": "inf"}, "POPSTREAM_FUTURE_HORIZON must be a finite"),
        ({"POPSTREAM_FUTURE_HORIZON": "3d"}, "POPSTREAM_FUTURE_HORIZON must be a number"),
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


def test_fractional_session_timeout_is_accepted() -> None:
    # Faust takes float seconds; "7.5" is a reasonable thing to write.
    assert from_env({"POPSTREAM_SESSION_TIMEOUT": "7.5"}).session_timeout == 7.5
    assert from_env({"POPSTREAM_SESSION_TIMEOUT": "1800"}).session_timeout == 1800.0
    assert from_env({}).session_timeout == 30.0


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1", True), ("0", False), ("true", True), ("FALSE", False), ("Yes", True),
     ("no", False), ("ON", True), ("off", False), (" on ", True), ("", True)],
)
def test_fast_path_takes_the_usual_booleans(raw: str, value: bool) -> None:
    assert from_env({"POPSTREAM_FAST_PATH": raw}).fast_path is value


def test_future_horizon_defaults_to_three_days_and_takes_seconds() -> None:
    assert from_env({}).future_horizon == 259_200.0
    assert from_env({"POPSTREAM_FUTURE_HORIZON": "60"}).future_horizon == 60.0
    assert from_env({"POPSTREAM_FUTURE_HORIZON": "3600.5"}).future_horizon == 3600.5
    assert from_env({"POPSTREAM_FUTURE_HORIZON": str(366 * 86_400)}).future_horizon == 31_622_400


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1", "::", "::1", "worker-0.popstream",
                                  "localhost", "kafka_1"])
def test_web_host_comes_from_the_environment(host: str) -> None:
    assert from_env({}).web_host == "0.0.0.0"
    assert from_env({"POPSTREAM_WEB_HOST": host}).web_host == host


@pytest.mark.parametrize("servers", ["[::1]:9092", "kafka_1:9092", "k1:9092, k2:9093",
                                     "10.0.0.1:65535"])
def test_bootstrap_servers_accept_real_addresses(servers: str) -> None:
    assert from_env({"KAFKA_BOOTSTRAP_SERVERS": servers}).bootstrap_servers == servers


def test_command_line_values_are_validated_too() -> None:
    with pytest.raises(ConfigError, match="POPSTREAM_WEB_PORT"):
        from_env({}, web_port=99_999)
    with pytest.raises(ConfigError, match="POPSTREAM_STORE"):
        from_env({}, store="memory")


def test_tls_files_that_are_not_pem_fail_at_start(tmp_path: Path) -> None:
    not_a_ca = tmp_path / "ca.pem"
    not_a_ca.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="cannot build a TLS context from KAFKA_SSL_CAFILE="):
        from_env({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(not_a_ca)})
    # Without TLS the files are not used, so not read.
    assert from_env({"KAFKA_SSL_CAFILE": str(not_a_ca)}).security.protocol == "PLAINTEXT"
