"""Failures an operator can read (issue #9 item 6).

Each way a worker cannot start ends within seconds with one line on stderr that
names the cause, and an exit code a supervisor can branch on: 5 for a setting
(named), 6 for Kafka out of reach. A worker that does start logs no error and no
terminal escape, and a worker whose broker goes away does not flood its log.
``popstream worker`` runs as a subprocess, as an operator runs it.

Brokers: the session's plaintext broker (``kafka_bootstrap``); one with SASL and
TLS listeners for this module (its certificate made with the JDK's keytool, as
Java is here anyway); and throwaway ones for the tests that stop a broker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.runtime.broker import EmbeddedKafka, _java, free_port, start_broker
from streams.runtime.preflight import check_kafka
from streams.runtime.topics import create_topics
from streams.settings import from_env
from tests.integration.harness import run, wait_for

_BIN = Path(sys.executable).parent / "popstream"
POPSTREAM = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "streams.cli"]
ESC = "\x1b"


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any Kafka or popstream setting."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "POPSTREAM_", "FAUST_", "F_"))}
    return {**env, **extra}


@dataclass
class Outcome:
    code: int
    stderr: str
    stdout: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


def worker(tmp: Path, env: dict[str, str], *args: str, timeout: float = 60) -> Outcome:
    """Run ``popstream worker`` to its end (these are the ones that must not start).
    Its data directory is under ``tmp`` unless ``env`` names one."""
    data_dir = [] if "POPSTREAM_DATA_DIR" in env else ["--data-dir", str(tmp / "data")]
    cmd = [*POPSTREAM, "worker", *data_dir, "--web-port", str(free_port()), *args]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=clean_env(**env), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return Outcome(proc.returncode, proc.stderr, proc.stdout, time.monotonic() - started)


def assert_one_line(outcome: Outcome, code: int, *words: str) -> None:
    assert outcome.code == code, outcome
    assert len(outcome.lines) == 1, outcome.stderr
    line = outcome.lines[0]
    assert line.startswith("popstream: "), line
    for word in words:
        assert word in line, (word, line)
    assert "Traceback" not in outcome.stderr


# --- Kafka out of reach: exit 6, one line ----------------------------------------


def test_closed_port_exits_6_with_one_line_within_seconds(tmp_path: Path) -> None:
    port = free_port()
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert_one_line(out, 6, f"127.0.0.1:{port}", "connection refused")
    assert out.seconds < 10, out.seconds


def test_unresolvable_host_exits_6(tmp_path: Path) -> None:
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": "kafka.invalid:9092"})
    assert_one_line(out, 6, "kafka.invalid", "does not resolve")


def test_every_bootstrap_server_is_tried_and_each_failure_named(tmp_path: Path) -> None:
    a, b = free_port(), free_port()
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{a},kafka.invalid:{b}"})
    assert_one_line(out, 6, f"127.0.0.1:{a}: connection refused", "kafka.invalid")


@pytest.mark.kafka
def test_tls_against_the_plaintext_listener_exits_6(tmp_path: Path,
                                                    kafka_bootstrap: str) -> None:
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                            "KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert_one_line(out, 6, kafka_bootstrap, "TLS handshake failed", "plaintext")
    assert out.seconds < 10, out.seconds


@pytest.mark.kafka
def test_sasl_against_the_plaintext_listener_exits_6(tmp_path: Path,
                                                     kafka_bootstrap: str) -> None:
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                            "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "alice",
                            "KAFKA_SASL_PASSWORD": "secret"})
    assert_one_line(out, 6, "does not speak SASL")
    assert "secret" not in out.stderr


# --- A broker with SASL and TLS listeners -----------------------------------------


@dataclass
class SecureBroker:
    broker: EmbeddedKafka
    sasl: str  # SASL_PLAINTEXT, PLAIN: alice / alice-secret
    tls: str  # SSL, certificate for 127.0.0.1 signed by nobody you trust
    lying: str  # PLAINTEXT, advertises a port where nothing listens
    ca: Path  # the certificate, to trust it


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    tmp = tmp_path_factory.mktemp("secure-broker")
    keystore, ca = tmp / "broker.p12", tmp / "ca.pem"
    keytool = str(Path(_java()).with_name("keytool"))
    subprocess.run([keytool, "-genkeypair", "-alias", "broker", "-keyalg", "RSA",
                    "-keysize", "2048", "-validity", "2", "-dname", "CN=127.0.0.1",
                    "-ext", "SAN=IP:127.0.0.1", "-keystore", str(keystore),
                    "-storetype", "PKCS12", "-storepass", "changeit", "-keypass", "changeit"],
                   check=True, capture_output=True)
    subprocess.run([keytool, "-exportcert", "-rfc", "-alias", "broker", "-keystore",
                    str(keystore), "-storepass", "changeit", "-file", str(ca)],
                   check=True, capture_output=True)
    port, sasl, tls, lying, controller = (free_port() for _ in range(5))
    nowhere = free_port()
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            'username="admin" password="admin-secret" user_alice="alice-secret";')
    extra = {
        "listeners": f"PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl},"
                     f"SSL://127.0.0.1:{tls},LYING://127.0.0.1:{lying},"
                     f"CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},"
                                f"SASL_PLAINTEXT://127.0.0.1:{sasl},SSL://127.0.0.1:{tls},"
                                f"LYING://127.0.0.1:{nowhere}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                          "SSL:SSL,LYING:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(keystore),
        "ssl.keystore.password": "changeit",
        "ssl.key.password": "changeit",
    }
    broker = start_broker(port=port, controller_port=controller, extra_config=extra)
    try:
        yield SecureBroker(broker, f"127.0.0.1:{sasl}", f"127.0.0.1:{tls}",
                           f"127.0.0.1:{lying}", ca)
    finally:
        broker.stop()


def sasl_env(secure: SecureBroker, password: str) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": secure.sasl, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "alice",
            "KAFKA_SASL_PASSWORD": password}


@pytest.mark.kafka
def test_wrong_sasl_password_exits_6_naming_authentication(
    tmp_path: Path, secure_broker: SecureBroker,
) -> None:
    out = worker(tmp_path, sasl_env(secure_broker, "not-her-password"))
    assert_one_line(out, 6, secure_broker.sasl, "authentication failed", "'alice'",
                    "KAFKA_SASL_PASSWORD")
    assert "not-her-password" not in out.stderr


@pytest.mark.kafka
def test_unsupported_sasl_mechanism_exits_6(tmp_path: Path,
                                            secure_broker: SecureBroker) -> None:
    env = {**sasl_env(secure_broker, "alice-secret"), "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}
    out = worker(tmp_path, env)
    assert_one_line(out, 6, "does not enable SASL mechanism SCRAM-SHA-512")


@pytest.mark.kafka
def test_untrusted_certificate_exits_6_naming_verification(
    tmp_path: Path, secure_broker: SecureBroker,
) -> None:
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": secure_broker.tls,
                            "KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert_one_line(out, 6, secure_broker.tls, "TLS certificate verification failed",
                    "KAFKA_SSL_CAFILE")


@pytest.mark.kafka
def test_plaintext_against_the_tls_listener_exits_6(tmp_path: Path,
                                                    secure_broker: SecureBroker) -> None:
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": secure_broker.tls})
    assert_one_line(out, 6, "the listener speaks TLS", "KAFKA_SECURITY_PROTOCOL is PLAINTEXT")


@pytest.mark.kafka
def test_advertised_address_out_of_reach_exits_6(tmp_path: Path,
                                                 secure_broker: SecureBroker) -> None:
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": secure_broker.lying})
    assert_one_line(out, 6, "advertises broker 1 at", "advertised.listeners")


@pytest.mark.kafka
async def test_right_credentials_and_trusted_certificate_pass(
    secure_broker: SecureBroker,
) -> None:
    good_sasl = from_env(sasl_env(secure_broker, "alice-secret"))
    assert (await check_kafka(good_sasl, timeout=10)).brokers
    trusted = from_env({"KAFKA_BOOTSTRAP_SERVERS": secure_broker.tls,
                        "KAFKA_SECURITY_PROTOCOL": "SSL",
                        "KAFKA_SSL_CAFILE": str(secure_broker.ca)})
    assert (await check_kafka(trusted, timeout=10)).brokers


# --- The cluster does not fit the settings: exit 5 --------------------------------


@pytest.mark.kafka
def test_partition_count_differing_from_existing_topics_exits_5(
    tmp_path: Path, kafka_bootstrap: str,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    run(create_topics(from_env({}, bootstrap_servers=kafka_bootstrap, topic_prefix=prefix,
                               partitions=4)))
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                            "POPSTREAM_TOPIC_PREFIX": prefix, "POPSTREAM_PARTITIONS": "2"})
    assert_one_line(out, 5, "configuration error", "POPSTREAM_PARTITIONS", "is 2",
                    f"{prefix}orders", "have 4", "POPSTREAM_PARTITIONS=4")


@pytest.mark.kafka
def test_replication_beyond_the_live_brokers_exits_5(tmp_path: Path,
                                                     kafka_bootstrap: str) -> None:
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                            "POPSTREAM_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}-",
                            "POPSTREAM_REPLICATION": "3"})
    assert_one_line(out, 5, "POPSTREAM_REPLICATION is 3", "1 live broker")


# --- Settings that pass a glance and would crash later: exit 5 -------------------


@pytest.mark.parametrize(("env", "named"), [
    ({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:99999"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ({"POPSTREAM_STORE": "memory"}, "POPSTREAM_STORE"),
    ({"POPSTREAM_FAST_PATH": "maybe"}, "POPSTREAM_FAST_PATH"),
    ({"POPSTREAM_SESSION_TIMEOUT": "soon"}, "POPSTREAM_SESSION_TIMEOUT"),
    ({"POPSTREAM_FUTURE_HORIZON": "10"}, "POPSTREAM_FUTURE_HORIZON"),
    ({"POPSTREAM_WEB_HOST": "tcp://10.0.0.11:80"}, "POPSTREAM_WEB_HOST"),
    ({"POPSTREAM_WEB_HOST": "192.0.2.1"}, "POPSTREAM_WEB_HOST"),  # not this machine's
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": __file__}, "KAFKA_SSL_CAFILE"),
])
def test_bad_setting_exits_5_naming_it(tmp_path: Path, env: dict[str, str], named: str) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", **env}
    out = worker(tmp_path, env)
    assert_one_line(out, 5, "configuration error", named)


def test_web_port_zero_exits_5(tmp_path: Path) -> None:
    # Faust refuses port 0 with a traceback; we refuse it first.
    cmd_env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    out = worker(tmp_path, cmd_env, "--web-port", "0")
    assert_one_line(out, 5, "POPSTREAM_WEB_PORT (--web-port) must be 1..65535, got 0")


def test_web_port_in_use_exits_5(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                                "POPSTREAM_WEB_HOST": "127.0.0.1"}, "--web-port", str(port))
    assert_one_line(out, 5, f"POPSTREAM_WEB_PORT (--web-port) {port} is in use")


def test_unwritable_data_dir_exits_5(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                            "POPSTREAM_DATA_DIR": str(blocker / "data")})
    assert_one_line(out, 5, "POPSTREAM_DATA_DIR", str(blocker / "data"), "Not a directory")


def test_read_only_data_dir_exits_5(tmp_path: Path) -> None:
    """A directory this user cannot write: a 0o500 one, or — root writes into those —
    one under /sys, which the kernel refuses to anyone."""
    if os.geteuid() == 0:
        locked, why = Path("/sys/popstream-data"), "Operation not permitted"
    else:
        locked, why = tmp_path / "locked", "Permission denied"
        locked.mkdir(mode=0o500)
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"},
                 "--data-dir", str(locked))
    assert_one_line(out, 5, "POPSTREAM_DATA_DIR", why)


def test_a_fractional_session_timeout_is_accepted(tmp_path: Path) -> None:
    # Accepted: the worker gets past the settings to Kafka (closed port here).
    out = worker(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                            "POPSTREAM_SESSION_TIMEOUT": "7.5"})
    assert_one_line(out, 6, "connection refused")


# --- A worker that starts: quiet, clean, bound where told ------------------------


class Running:
    """``popstream worker`` left running, stderr and stdout to files."""

    def __init__(self, tmp: Path, env: dict[str, str], host: str = "127.0.0.1") -> None:
        self.host, self.port = host, free_port()
        self.stderr_path, self.stdout_path = tmp / "worker.err", tmp / "worker.out"
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                [*POPSTREAM, "worker", "--data-dir", str(tmp / "data"),
                 "--web-port", str(self.port)],
                env=clean_env(POPSTREAM_WEB_HOST=host, **env), stdout=out, stderr=err,
            )

    def status(self, path: str, host: str | None = None) -> int | None:
        url = f"http://{host or self.host}:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /metrics answers 200: started, assigned and recovered."""
        def ready() -> bool:
            assert self.proc.poll() is None, self.stderr
            return self.status("/metrics") == 200

        wait_for(ready, timeout, "the worker's /metrics")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.mark.kafka
@pytest.mark.slow
def test_a_normal_start_logs_no_error_and_no_escape_and_binds_to_web_host(
    tmp_path: Path, kafka_bootstrap: str,
) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "POPSTREAM_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}-",
           "POPSTREAM_APP_ID": f"ps-{uuid.uuid4().hex[:8]}",  # a new group: a fresh start
           # What Kubernetes injects for Services named "web" and "faust-web":
           "WEB_PORT": "tcp://10.0.0.11:80", "WEB_HOST": "10.0.0.11",
           "FAUST_WEB_PORT": "tcp://10.0.0.12:80", "APP_WEB_ROUTER_ENABLED": "true"}
    run(create_topics(from_env({}, bootstrap_servers=kafka_bootstrap,
                               topic_prefix=env["POPSTREAM_TOPIC_PREFIX"])))  # as documented
    # 127.0.0.2 is this machine too (all of 127/8 is loopback on Linux), but a
    # server bound to it alone is not reachable at 127.0.0.1.
    w = Running(tmp_path, env, host="127.0.0.2")
    try:
        w.wait_ready()
        assert w.status("/health") == 200
        assert w.status("/health", host="127.0.0.1") is None  # bound to 127.0.0.2 only
        assert w.status("/router") == 404  # Faust's topology endpoints are off
        assert w.status("/table/state") == 404
        assert w.status("/graph/") == 404
        time.sleep(2)  # a couple of flush intervals of a running worker
    finally:
        code = w.stop()
    assert code == 0, w.stderr
    errors = [line for line in w.stderr.splitlines()
              if "level=error" in line or "level=critical" in line]
    assert errors == [], w.stderr
    assert ESC not in w.stderr
    assert ESC not in w.stdout_path.read_text(errors="replace")  # Faust's spinner is off
    assert "Traceback" not in w.stderr


@pytest.mark.kafka
@pytest.mark.slow
def test_a_worker_whose_broker_goes_away_does_not_flood_its_log(tmp_path: Path) -> None:
    broker = start_broker()
    try:
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
        run(create_topics(from_env(env)))
        w = Running(tmp_path, env)
        try:
            w.wait_ready()
            before = len(w.stderr.splitlines())
            broker.stop()
            watched = 15.0  # one and a half rate-limit intervals
            time.sleep(watched)
            lines = w.stderr.splitlines()[before:]
        finally:
            w.stop()
    finally:
        broker.stop()
    assert lines, "the worker did not notice its broker going away"
    # Unlimited, this was ~80 lines/s; now each kind of line passes once, then
    # once per 10 s with a count of the others.
    assert len(lines) <= 40, "\n".join(lines)
    assert any("similar suppressed)" in line for line in lines), "\n".join(lines)
    assert ESC not in w.stderr
    assert "Traceback" not in w.stderr  # not even from a thread cancelled at shutdown


# --- broker start --foreground ----------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.kafka
@pytest.mark.slow
def test_broker_in_the_foreground_stops_its_jvm_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "broker"
    out_path = tmp_path / "broker.out"
    with open(out_path, "wb") as out:
        cli = subprocess.Popen(
            [*POPSTREAM, "broker", "start", "--foreground", "--data-dir", str(data),
             "--port", str(free_port())],
            env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "Kafka 4" in out_path.read_text() or cli.poll() is not None, 120,
                 "the broker to start")
        assert cli.poll() is None, out_path.read_text()
        jvm = int((data / "broker.pid").read_text().split()[0])
        assert _alive(jvm)
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(60) == 0, out_path.read_text()
    finally:
        if cli.poll() is None:
            cli.kill()
    wait_for(lambda: not _alive(jvm), 10, "the JVM to exit")
    assert not (data / "broker.pid").exists()
    assert "broker stopped" in out_path.read_text()
