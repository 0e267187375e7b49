"""An embedded, real Apache Kafka broker (KRaft, single node) on loopback.

Tests and the demo need a real broker, and this machine has Java and Maven but no
Docker: the broker's jars are resolved from Maven Central with Maven (``broker/
pom.xml``) once, cached under ``.cache/kafka/<version>/libs``, and the broker runs
as a child JVM in combined broker+controller mode. Start-up is ~3 s once cached.

Nothing here imports Kafka client code: readiness is a TCP connect plus the
broker's own "started" log line, so the module works before any Python Kafka
library is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from streams.errors import BrokerUnavailable

KAFKA_VERSION: Final = "4.1.1"
_REPO_ROOT: Final = Path(__file__).resolve().parents[2]  # streams/runtime/broker.py
_POM: Final = _REPO_ROOT / "broker" / "pom.xml"
_READY_LINE: Final = "Kafka Server started"

_LOG4J2: Final = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = info
"""


class BrokerError(BrokerUnavailable):
    """The embedded broker could not be resolved, started or stopped."""


def cache_dir() -> Path:
    return Path(os.environ.get("POPSTREAM_CACHE_DIR", _REPO_ROOT / ".cache"))


def ensure_jars(
    version: str = KAFKA_VERSION,
    cache: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The directory of the broker's jars, resolving them with Maven if needed."""
    libs = (cache or cache_dir()) / "kafka" / version / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not on PATH: it resolves the Kafka jars")
    if progress:
        progress(f"resolving org.apache.kafka:kafka_2.13:{version} from Maven Central")
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(_POM), "dependency:copy-dependencies",
        f"-Dkafka.version={version}", f"-DoutputDirectory={tmp}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        raise BrokerError(
            f"maven could not resolve Kafka {version} (exit {proc.returncode}):\n"
            + (proc.stdout + proc.stderr)[-3000:]
        )
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(version)
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java:
        raise BrokerError("java is not on PATH (Kafka needs Java 17+)")
    return java


@dataclass
class EmbeddedKafka:
    """A running broker; stop it with :meth:`stop` or use it as a context manager."""

    data_dir: Path
    port: int
    controller_port: int
    process: subprocess.Popen[bytes]
    owns_data_dir: bool = False
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "server.log"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedKafka:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no broker log)"


def start_broker(
    data_dir: Path | None = None,
    port: int = 0,
    controller_port: int = 0,
    extra_config: dict[str, str] | None = None,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> EmbeddedKafka:
    """Format a KRaft log dir and start a broker on 127.0.0.1; wait until it serves.

    ``port=0`` picks a free port. An existing, formatted ``data_dir`` is reused
    (topics survive a restart); a new one is formatted with a random cluster id.
    """
    libs = ensure_jars(progress=progress)
    owns = data_dir is None
    data = Path(tempfile.mkdtemp(prefix="popstream-kafka-")) if data_dir is None else data_dir
    data.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    controller_port = controller_port or free_port()
    logs = data / "kraft-logs"
    config = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(logs),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "num.partitions": "4",
        "log.flush.interval.messages": str(2**62),  # leave flushing to the OS
        **(extra_config or {}),
    }
    props = data / "server.properties"
    props.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
    log_path = data / "server.log"
    log4j = data / "log4j2.properties"
    log4j.write_text(_LOG4J2.format(log=log_path))
    classpath = f"{libs}/*"
    java = _java()
    if not (logs / "meta.properties").exists():
        cluster_id = subprocess.run(
            [java, "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"],
            capture_output=True, text=True, check=True,
        ).stdout.split()[-1]
        fmt = subprocess.run(
            [java, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
             "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
            capture_output=True, text=True, check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")
    heap = os.environ.get("POPSTREAM_KAFKA_HEAP", "-Xms256m -Xmx768m").split()
    out = open(data / "stdout.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [java, *heap, "-XX:+UseG1GC", "-Djava.awt.headless=true",
         f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath, "kafka.Kafka", str(props)],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    out.close()
    broker = EmbeddedKafka(data, port, controller_port, proc, owns_data_dir=owns)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"Kafka exited with code {proc.returncode} during start-up; log tail:\n"
                    + _log_tail(log_path) + "\n" + _log_tail(data / "stdout.log")
                )
            if _READY_LINE in _log_tail(log_path, 200) and _port_open(port):
                return broker
            time.sleep(0.2)
    except BaseException:
        # Interrupted while waiting (Ctrl-C, SIGTERM): the JVM runs in a session
        # of its own, so nothing else would ever stop it.
        broker.stop()
        raise
    broker.stop()
    raise BrokerError(f"Kafka did not start within {timeout:.0f} s; log tail:\n"
                      + _log_tail(log_path))


def _port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def kafka_for_tests() -> Iterator[str]:
    """Bootstrap servers for tests: ``KAFKA_BOOTSTRAP_SERVERS`` if set (an existing
    cluster), else a fresh embedded broker stopped on exit."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    with start_broker() as broker:
        yield broker.bootstrap_servers


# --- command line (wired into `popstream broker`) --------------------------------

def default_data_dir() -> Path:
    return cache_dir() / "broker-data"


class _Stop(Exception):
    """A stop signal arrived (SIGTERM, SIGHUP; SIGINT is KeyboardInterrupt)."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def cli_start(data_dir: Path, port: int, foreground: bool) -> int:
    pidfile = data_dir / "broker.pid"
    if pidfile.exists() and _alive(int(pidfile.read_text().split()[0])):
        pid, bootstrap = pidfile.read_text().split()
        print(f"popstream: broker already running (pid {pid}) at {bootstrap}")
        return 0
    previous: dict[int, Any] = {}
    if foreground:
        # In the foreground the JVM lives exactly as long as this process: a stop
        # signal (Ctrl-C, SIGTERM from a supervisor or `kill`, SIGHUP when the
        # terminal goes) stops it, even mid-start. Left at their defaults,
        # SIGTERM and SIGHUP would end this process and orphan the JVM, which runs
        # in a session of its own.
        previous = {sig: signal.signal(sig, _raise_stop) for sig in _STOP_SIGNALS[1:]}
    try:
        return _start(data_dir, port, foreground, pidfile)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start(data_dir: Path, port: int, foreground: bool, pidfile: Path) -> int:
    def progress(message: str) -> None:
        print(f"popstream: {message}", file=sys.stderr, flush=True)

    try:
        broker = start_broker(data_dir, port=port, progress=progress)
    except BrokerError as exc:
        print(f"popstream: {exc}", file=sys.stderr)
        return 1
    except (_Stop, KeyboardInterrupt):
        print("popstream: start interrupted; broker stopped", file=sys.stderr)
        return 1
    pidfile.write_text(f"{broker.pid} {broker.bootstrap_servers}\n")
    print(f"popstream: Kafka {KAFKA_VERSION} at {broker.bootstrap_servers} "
          f"(pid {broker.pid}, data {data_dir})", flush=True)
    if not foreground:
        return 0
    stopped = False
    try:
        broker.process.wait()  # until a stop signal's handler raises, or the JVM dies
    except (_Stop, KeyboardInterrupt):
        stopped = True
    finally:
        for sig in _STOP_SIGNALS:  # a second signal must not cut the shutdown short
            signal.signal(sig, signal.SIG_IGN)
        broker.stop()
        pidfile.unlink(missing_ok=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not stopped:
        print(f"popstream: Kafka exited on its own (code {broker.process.returncode}); "
              f"log: {broker.log_path}", file=sys.stderr)
        return 1
    print("popstream: broker stopped", flush=True)
    return 0


def cli_stop(data_dir: Path) -> int:
    pidfile = data_dir / "broker.pid"
    if not pidfile.exists():
        print("popstream: no broker running")
        return 0
    pid = int(pidfile.read_text().split()[0])
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    print(f"popstream: broker (pid {pid}) stopped")
    return 0


def cli_status(data_dir: Path) -> int:
    pidfile = data_dir / "broker.pid"
    if pidfile.exists():
        pid, bootstrap = pidfile.read_text().split()
        if _alive(int(pid)):
            print(f"running: pid {pid} at {bootstrap}")
            return 0
    print("not running")
    return 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def add_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bp = sub.add_parser(
        "broker",
        help="start/stop an embedded Apache Kafka (KRaft) on loopback",
        description="Run a real single-node Apache Kafka broker from jars resolved with "
        "Maven (cached in .cache/kafka). Data persists in --data-dir between runs.",
    )
    bp.add_argument("action", choices=("start", "stop", "status"))
    bp.add_argument("--data-dir", type=Path, default=None,
                    help="KRaft log dir (default .cache/broker-data)")
    bp.add_argument("--port", type=int, default=9092)
    bp.add_argument("--foreground", action="store_true",
                    help="stay attached; Ctrl-C, SIGTERM or SIGHUP stops the broker")


def run_cli(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or default_data_dir()
    if args.action == "start":
        return cli_start(data_dir, args.port, args.foreground)
    if args.action == "stop":
        return cli_stop(data_dir)
    return cli_status(data_dir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m streams.runtime.broker")
    add_cli(parser.add_subparsers(dest="command", required=True))
    sys.exit(run_cli(parser.parse_args()))
