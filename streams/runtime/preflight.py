"""Checks a worker runs before Faust starts, so a failure is one line an operator
can act on (and an exit code a supervisor can branch on), not a Faust traceback.

Faust reports an unreachable broker, a rejected password or an untrusted
certificate as a 50-line traceback from deep inside its service tree, and some
mistakes (topics with another partition count, an unwritable data directory, a
port in use) only surface minutes into a run. :func:`preflight` finds each of
them in well under a second on a healthy cluster, bounded by ``timeout`` on a
silent one, and raises:

* :class:`~streams.errors.ConfigError` (exit 5) for what the operator configured
  wrong: the data directory, the web port, partitions or replication that do not
  fit the cluster;
* :class:`~streams.errors.BrokerUnavailable` (exit 6) for what stands between the
  worker and Kafka: nothing listening, a name that does not resolve, TLS that
  does not verify or is not spoken, SASL credentials the broker rejects, a broker
  advertising an address this host cannot reach.

The Kafka half talks to the broker the way aiokafka will (same security
settings), one step at a time, so the step that fails names the cause: TCP, then
TLS and SASL, then a metadata request, then the advertised brokers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from streams.errors import BrokerUnavailable, ConfigError
from streams.runtime.topics import TopicNames
from streams.settings import KafkaSecurity, Settings

DEFAULT_TIMEOUT: Final = 10.0
_TLS_RECORD_TYPES: Final = (0x15, 0x16)  # alert, handshake: what a TLS server replies


def preflight(settings: Settings, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Check the data directory, the web port and Kafka; raise ConfigError or
    BrokerUnavailable with one line naming the cause. Returns None when a worker
    with these settings can start.

    Synchronous, for a command's start (it runs its own event loop and leaves
    none behind); inside a running loop, await :func:`check_kafka` instead.
    """
    check_data_dir(settings.data_dir)
    check_web_port(settings.web_host, settings.web_port)
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        runner.run(check_kafka(settings, timeout))


def check_data_dir(path: Path) -> None:
    """The worker's data directory exists (created if needed) and takes files."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".popstream-write-check-"):
            pass
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"POPSTREAM_DATA_DIR (--data-dir) {str(path)!r} cannot be created or written: "
            f"{reason}"
        ) from None


def check_web_port(host: str, port: int) -> None:
    """The web server can listen on ``host:port`` (bound and released at once,
    with the SO_REUSEADDR aiohttp uses)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"POPSTREAM_WEB_HOST {host!r} does not resolve: {exc}") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"POPSTREAM_WEB_PORT (--web-port) {port} is in use on {host} "
                        "(another worker on this host?)"
                    ) from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise ConfigError(
                        f"POPSTREAM_WEB_HOST {host!r} is not an address of this machine"
                    ) from None
                raise ConfigError(
                    f"POPSTREAM_WEB_HOST/POPSTREAM_WEB_PORT: cannot listen on {host}:{port}: "
                    f"{exc.strerror or exc}"
                ) from None


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What one bootstrap server said: the brokers it advertises and the partition
    counts of the topics asked about that exist."""

    server: str
    brokers: tuple[tuple[int, str, int], ...]  # node id, host, port
    partitions: dict[str, int]


async def check_kafka(settings: Settings, timeout: float = DEFAULT_TIMEOUT) -> ClusterView:
    """Reach Kafka with the worker's security settings and check the cluster fits
    the settings (partitions of existing topics, replication vs brokers)."""
    with _kafka_logs_silenced():
        view = await _first_answer(settings, _checked_topics(settings), timeout)
        await _check_advertised(view, timeout)
    _check_fit(settings, view)
    return view


def _checked_topics(settings: Settings) -> list[str]:
    """Topics whose partition count must equal POPSTREAM_PARTITIONS: the event
    topics (one seller's events share a partition number in all of them) and the
    state table's changelog (Faust refuses a changelog that differs)."""
    from streams.runtime.worker import TABLE_NAME

    return [*TopicNames(settings.topic_prefix).events,
            f"{settings.app_id}-{TABLE_NAME}-changelog"]


async def _first_answer(settings: Settings, topics: list[str], timeout: float) -> ClusterView:
    servers = [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()]
    tasks = [asyncio.ensure_future(_ask(s, settings.security, topics, timeout)) for s in servers]
    problems: dict[str, str] = {}
    try:
        for next_done in asyncio.as_completed(tasks):
            answer = await next_done
            if isinstance(answer, ClusterView):
                return answer
            problems[answer[0]] = answer[1]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    detail = "; ".join(f"{s}: {problems[s]}" for s in servers if s in problems)
    raise BrokerUnavailable(f"cannot reach Kafka at {detail}")


def _split(server: str) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    return host.strip("[]"), int(port)


async def _tcp_problem(host: str, port: int, timeout: float) -> str | None:
    """Why a TCP connection to ``host:port`` fails, or None if it opens."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g} s (a firewall, or the wrong address?)"
    except socket.gaierror:
        return f"host name {host!r} does not resolve"
    except ConnectionRefusedError:
        return "connection refused (is Kafka running there, on that port?)"
    except OSError as exc:
        return exc.strerror or f"{type(exc).__name__}: {exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def _ask(server: str, security: KafkaSecurity, topics: list[str],
               timeout: float) -> ClusterView | tuple[str, str]:
    """Connect to one bootstrap server step by step; a ClusterView, or
    ``(server, why not)``."""
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    host, port = _split(server)
    problem = await _tcp_problem(host, port, timeout)
    if problem is not None:
        return server, problem
    try:
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(timeout * 1000),
                        **security.aiokafka_kwargs()),
            timeout,
        )
    except Exception as exc:
        return server, explain(exc, security)
    try:
        # allow_auto_topic_creation=False: asking must not create the topics with
        # the broker's default partition count.
        response = await asyncio.wait_for(
            conn.send(MetadataRequest(topics, allow_auto_topic_creation=False)), timeout
        )
        metadata: dict[str, Any] = response.to_object()
    except Exception as exc:
        return server, explain(exc, security)
    finally:
        conn.close()
    brokers = tuple((b["node_id"], b["host"], b["port"]) for b in metadata["brokers"])
    partitions = {t["topic"]: len(t["partitions"]) for t in metadata["topics"]
                  if t["error_code"] == 0}
    return ClusterView(server, brokers, partitions)


def explain(exc: BaseException, security: KafkaSecurity) -> str:
    """One clause saying why a Kafka connection with ``security`` failed."""
    from aiokafka import errors

    protocol = security.protocol
    if isinstance(exc, ssl.SSLCertVerificationError):
        trust = (f"KAFKA_SSL_CAFILE {security.ssl_cafile}" if security.ssl_cafile
                 else "the system's CA bundle; KAFKA_SSL_CAFILE names another")
        return f"TLS certificate verification failed: {exc.verify_message} (trusting {trust})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, errors.SaslAuthenticationFailed | errors.AuthenticationFailedError):
        said = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
        return (f"authentication failed: SASL {security.sasl_mechanism} as "
                f"{security.sasl_username!r} was rejected"
                + (f" ({said})" if said else "")
                + "; check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
    if isinstance(exc, errors.UnsupportedSaslMechanismError):
        return (f"the listener does not enable SASL mechanism {security.sasl_mechanism} "
                "(KAFKA_SASL_MECHANISM)")
    if isinstance(exc, errors.IllegalSaslStateError):
        return (f"the listener does not speak SASL, but KAFKA_SECURITY_PROTOCOL is {protocol} "
                "(a PLAINTEXT or SSL listener?)")
    if _replied_with_tls(exc) and not protocol.endswith("SSL"):
        return (f"the listener speaks TLS, but KAFKA_SECURITY_PROTOCOL is {protocol} "
                "(SSL or SASL_SSL?)")
    if protocol.endswith("SSL") and _closed(exc):
        return (f"TLS handshake failed: the broker closed the connection "
                f"(KAFKA_SECURITY_PROTOCOL is {protocol}: is the listener plaintext?)")
    if isinstance(exc, TimeoutError):
        return "connected, but Kafka did not answer in time"
    return f"{type(exc).__name__}: {exc}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _replied_with_tls(exc: BaseException) -> bool:
    """aiokafka read a TLS record header as a Kafka length prefix."""
    for cause in _causes(exc):
        if isinstance(cause, asyncio.IncompleteReadError) and cause.expected:
            first, version = cause.expected >> 24, (cause.expected >> 16) & 0xFF
            if first in _TLS_RECORD_TYPES and version == 3:
                return True
    return False


def _closed(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaConnectionError

    return any(isinstance(c, ConnectionError | EOFError | asyncio.IncompleteReadError
                          | KafkaConnectionError) for c in _causes(exc))


async def _check_advertised(view: ClusterView, timeout: float) -> None:
    """Each broker the cluster advertises is reachable from here: Faust talks to
    the partition leaders at these addresses, not at the bootstrap address."""
    others = [(node, host, port) for node, host, port in view.brokers
              if (host, port) != _split(view.server)]
    problems = await asyncio.gather(*(_tcp_problem(h, p, timeout) for _, h, p in others))
    for (node, host, port), problem in zip(others, problems, strict=True):
        if problem is not None:
            raise BrokerUnavailable(
                f"Kafka at {view.server} answered, but advertises broker {node} at "
                f"{host}:{port}, which this host cannot reach: {problem} "
                "(the broker's advertised.listeners must be reachable from the worker)"
            )


def _check_fit(settings: Settings, view: ClusterView) -> None:
    missing = [t for t in _checked_topics(settings) if t not in view.partitions]
    if missing and view.brokers and settings.replication > len(view.brokers):
        # Only when topics are still to be created: a broker down for maintenance
        # must not stop workers whose topics exist.
        raise ConfigError(
            f"POPSTREAM_REPLICATION is {settings.replication}, but the cluster at "
            f"{view.server} has {len(view.brokers)} live broker(s) to create "
            f"{', '.join(missing)} on"
        )
    wrong = {t: n for t, n in view.partitions.items() if n != settings.partitions}
    if wrong:
        by_count: dict[int, list[str]] = {}
        for topic, n in sorted(wrong.items()):
            by_count.setdefault(n, []).append(topic)
        found = "; ".join(f"{', '.join(ts)} {'has' if len(ts) == 1 else 'have'} {n}"
                          for n, ts in sorted(by_count.items()))
        counts = sorted(set(wrong.values()))
        hint = (f"set POPSTREAM_PARTITIONS={counts[0]}" if len(counts) == 1
                else "the existing topics disagree among themselves")
        raise ConfigError(
            f"POPSTREAM_PARTITIONS (--partitions) is {settings.partitions}, but existing "
            f"topics have other partition counts ({found}): {hint}, or use another "
            "POPSTREAM_TOPIC_PREFIX / POPSTREAM_APP_ID (a topic's partition count decides "
            "which worker owns a seller, so it must match)"
        )


@contextlib.contextmanager
def _kafka_logs_silenced() -> Iterator[None]:
    """aiokafka logs each failed attempt at ERROR; the preflight says it once."""
    logger = logging.getLogger("aiokafka")
    saved = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(saved)


__all__ = ["ClusterView", "check_data_dir", "check_kafka", "check_web_port", "explain",
           "preflight"]
