"""One settings object, built from the environment and the command line, validated
once at start-up and passed down (never read ad hoc deep in the code).

Kafka security comes from the environment only, so no secret lands in a command
line, a process list or the repository:

=========================  ==================================================
KAFKA_BOOTSTRAP_SERVERS    ``host:port[,host:port]`` (default 127.0.0.1:9092)
KAFKA_SECURITY_PROTOCOL    PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
KAFKA_SASL_MECHANISM       PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
KAFKA_SASL_USERNAME        with a SASL protocol
KAFKA_SASL_PASSWORD        with a SASL protocol
KAFKA_SSL_CAFILE           CA bundle for SSL / SASL_SSL (default: system)
KAFKA_SSL_CERTFILE         client certificate (mutual TLS), with KEYFILE
KAFKA_SSL_KEYFILE          client key (mutual TLS)
POPSTREAM_TOPIC_PREFIX     prefix of every topic name (default none)
POPSTREAM_PARTITIONS       partitions of created topics (default 4)
POPSTREAM_REPLICATION      replication factor of created topics (default 1)
POPSTREAM_STORE            memory:// or rocksdb:// (default memory://)
POPSTREAM_WEB_PORT         port of /metrics and /api, 1..65535 (default 6066)
POPSTREAM_WEB_HOST         address the web server binds to (default 0.0.0.0:
                           every interface; 127.0.0.1 keeps it on the host)
POPSTREAM_DATA_DIR         worker data directory; created and checked for
                           writing at start (default .cache/worker)
POPSTREAM_CATALOG          amazon|walmart|ebay or a catalog TOML (default: amazon)
POPSTREAM_APP_ID           consumer group and changelog prefix (default popstream)
POPSTREAM_MAX_MESSAGE_BYTES  larger message values are dead-lettered (default 1 MiB)
POPSTREAM_SESSION_TIMEOUT  seconds (6..1800, fractions allowed) before a silent
                           worker's partitions move (default 30)
POPSTREAM_FUTURE_HORIZON   seconds (60..31622400): events stamped further ahead
                           of the clock are dead-lettered (default 259200, 3 days)
POPSTREAM_FAST_PATH        0 = Faust's stock per-message path (default 1: batches);
                           1/0, true/false, yes/no, on/off
POPSTREAM_EXPORT           per-seller series: alerting (default: sellers in warning
                           or breach, plus the watch list) or all (streams.fleet)
POPSTREAM_WATCHLIST        a file of seller ids (one a line) always exported
POPSTREAM_GRAFANA_URL      the Grafana seller dashboard, linked from the seller
                           pages with the seller id appended (e.g.
                           http://grafana:3000/d/popstream-seller/seller?var-seller_id=)
POPSTREAM_INSTANCE_ID      static group membership (KIP-345): a worker restarted
                           under the same id takes its partitions straight back
                           instead of waiting out the session timeout; it must
                           come back with the same web host and port (Faust
                           checks its assignment against them) (default none)
=========================  ==================================================

Every value is checked here, at start, against what the runtime will accept
later: a setting that would crash Faust or aiokafka minutes into a run (port
99999, ``POPSTREAM_STORE=memory``) is a :class:`ConfigError` naming the variable.

Why ``POPSTREAM_FUTURE_HORIZON`` is 3 days: an event stamped in the future is
held until its time comes (the metrics are "as of now"), and a held event costs
memory until it is due. Producers' clocks drift by seconds and a timezone
mislabel (local time sent as UTC) is at most 14 hours off, so 3 days still
catches the real bugs (a year typed wrong, milliseconds read as seconds) while
leaving honest producers plenty of room.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from streams.errors import ConfigError

SecurityProtocol: TypeAlias = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TOPIC_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
)


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def validate(self) -> None:
        if self.protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL must be one of {SECURITY_PROTOCOLS}, "
                f"got {self.protocol!r}"
            )
        if self.protocol.startswith("SASL"):
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(
                    f"KAFKA_SASL_MECHANISM must be one of {SASL_MECHANISMS} with "
                    f"{self.protocol}, got {self.sasl_mechanism!r}"
                )
            if not self.sasl_username or not self.sasl_password:
                raise ConfigError(
                    f"{self.protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
                )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ConfigError(f"KAFKA_{name.upper()} does not name a file: {path}")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        try:
            self.ssl_context()
        except (ssl.SSLError, OSError, ValueError) as exc:
            files = ", ".join(f"{n}={p}" for n, p in (
                ("KAFKA_SSL_CAFILE", self.ssl_cafile), ("KAFKA_SSL_CERTFILE", self.ssl_certfile),
                ("KAFKA_SSL_KEYFILE", self.ssl_keyfile)) if p is not None)
            raise ConfigError(
                f"cannot build a TLS context from {files or 'the system CA bundle'}: "
                f"{getattr(exc, 'reason', None) or exc}"
            ) from None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.protocol.endswith("SSL"):
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        if self.ssl_certfile and self.ssl_keyfile:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile))
        return context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        if self.protocol.startswith("SASL"):
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        return kwargs


DAY: Final = 86_400.0
FUTURE_HORIZON_RANGE: Final = (60.0, 366 * DAY)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_HOST_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")  # _: compose names
STORES: Final = ("memory://", "rocksdb://")


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    security: KafkaSecurity = KafkaSecurity()
    topic_prefix: str = ""
    partitions: int = 4
    replication: int = 1
    store: str = "memory://"
    web_port: int = 6066
    web_host: str = "0.0.0.0"  # the bind address of /metrics and /api
    data_dir: Path = Path(".cache/worker")
    catalog_path: str | None = None  # a profile name or a TOML file
    app_id: str = "popstream"
    as_of: int | None = None  # a fixed clock (us), for backfills and tests
    flush_interval: float = 1.0
    max_message_bytes: int = 1_048_576
    session_timeout: float = 30.0
    fast_path: bool = True  # streams.runtime.fastpath: batches instead of Faust's per-message path
    instance_id: str | None = None  # consumer group.instance.id (static membership)
    # Seconds: an event stamped further after the clock is dead-lettered (see the
    # module docstring for why 3 days).
    future_horizon: float = 3 * DAY
    export: str = "alerting"  # streams.fleet: per-seller series for which sellers
    watchlist: Path | None = None  # sellers always exported, one id per line
    grafana_url: str | None = None  # seller dashboard URL, the seller id appended

    def validate(self) -> Settings:
        self.security.validate()
        if not self.bootstrap_servers.strip():
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is empty")
        for server in self.bootstrap_servers.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not (sep and port.isascii() and port.isdigit() and _is_host(host.strip("[]"))):
                raise ConfigError(
                    f"KAFKA_BOOTSTRAP_SERVERS: expected host:port[,host:port], got {server!r}"
                )
            if not 1 <= int(port) <= 65535:
                raise ConfigError(
                    f"KAFKA_BOOTSTRAP_SERVERS: port must be 1..65535, got {port} in {server!r}"
                )
        if not 1 <= self.partitions <= 10_000:
            raise ConfigError(
                f"POPSTREAM_PARTITIONS (--partitions): partitions must be 1..10000, "
                f"got {self.partitions}"
            )
        if not 1 <= self.replication <= 32:
            raise ConfigError(
                f"POPSTREAM_REPLICATION: replication must be 1..32, got {self.replication}"
            )
        if not 1 <= self.web_port <= 65535:
            raise ConfigError(
                f"POPSTREAM_WEB_PORT (--web-port) must be 1..65535, got {self.web_port}"
            )
        if not _is_host(self.web_host):
            raise ConfigError(
                "POPSTREAM_WEB_HOST must be an IP address or a host name to bind to "
                f"(such as 0.0.0.0 or 127.0.0.1), got {self.web_host!r}"
            )
        if not self.store.startswith(STORES):
            raise ConfigError(
                f"POPSTREAM_STORE (--store) must be memory:// or rocksdb://, got {self.store!r}"
            )
        if not set(self.topic_prefix) <= _TOPIC_CHARS:
            raise ConfigError(
                f"POPSTREAM_TOPIC_PREFIX may use [A-Za-z0-9._-] only, got {self.topic_prefix!r}"
            )
        if not self.app_id or not set(self.app_id) <= _TOPIC_CHARS:
            raise ConfigError(f"POPSTREAM_APP_ID may use [A-Za-z0-9._-] only, got {self.app_id!r}")
        if self.instance_id is not None and not (
            self.instance_id and set(self.instance_id) <= _TOPIC_CHARS
        ):
            raise ConfigError(
                f"POPSTREAM_INSTANCE_ID may use [A-Za-z0-9._-] only, got {self.instance_id!r}"
            )
        if self.max_message_bytes < 1024:
            raise ConfigError(
                f"POPSTREAM_MAX_MESSAGE_BYTES must be >= 1024, got {self.max_message_bytes}"
            )
        if not 6 <= self.session_timeout <= 1800:
            raise ConfigError(
                f"POPSTREAM_SESSION_TIMEOUT must be 6..1800 s, got {self.session_timeout:.15g}"
            )
        low, high = FUTURE_HORIZON_RANGE
        if not low <= self.future_horizon <= high:
            raise ConfigError(
                f"POPSTREAM_FUTURE_HORIZON must be {low:.0f}..{high:.0f} s (1 minute..366 days), "
                f"got {self.future_horizon:.15g}"
            )
        if self.export not in ("alerting", "all"):
            raise ConfigError(
                f"POPSTREAM_EXPORT must be 'alerting' (per-seller series for sellers in "
                f"warning or breach) or 'all', got {self.export!r}")
        if self.grafana_url is not None and not self.grafana_url.startswith(
                ("http://", "https://")):
            raise ConfigError(f"POPSTREAM_GRAFANA_URL must be an http(s) URL, got "
                              f"{self.grafana_url!r}")
        if self.watchlist is not None and not self.watchlist.is_file():
            raise ConfigError(f"POPSTREAM_WATCHLIST: no such file {str(self.watchlist)!r}")
        if not 0 < self.flush_interval < float("inf"):
            raise ConfigError(f"flush interval must be > 0 s, got {self.flush_interval}")
        return self

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes).validate()


def _is_host(text: str) -> bool:
    """An IP address or a DNS name: what a socket can bind to."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return True
    labels = text.removesuffix(".").split(".")
    return len(text) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number of seconds, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(f"{name} must be 1/0, true/false, yes/no or on/off, got {raw!r}")


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else None


def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``env`` (default ``os.environ``), then explicit overrides
    (command-line values; ``None`` means "not given")."""
    env = os.environ if env is None else env
    protocol = env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    security = KafkaSecurity(
        protocol=protocol,  # type: ignore[arg-type]  # validated below
        sasl_mechanism=env.get("KAFKA_SASL_MECHANISM"),
        sasl_username=env.get("KAFKA_SASL_USERNAME"),
        sasl_password=env.get("KAFKA_SASL_PASSWORD"),
        ssl_cafile=_path(env, "KAFKA_SSL_CAFILE"),
        ssl_certfile=_path(env, "KAFKA_SSL_CERTFILE"),
        ssl_keyfile=_path(env, "KAFKA_SSL_KEYFILE"),
    )
    settings = Settings(
        bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        security=security,
        topic_prefix=env.get("POPSTREAM_TOPIC_PREFIX", ""),
        partitions=_int(env, "POPSTREAM_PARTITIONS", 4),
        replication=_int(env, "POPSTREAM_REPLICATION", 1),
        store=env.get("POPSTREAM_STORE", "memory://"),
        web_port=_int(env, "POPSTREAM_WEB_PORT", 6066),
        web_host=env.get("POPSTREAM_WEB_HOST") or "0.0.0.0",
        data_dir=Path(env.get("POPSTREAM_DATA_DIR") or ".cache/worker"),
        catalog_path=env.get("POPSTREAM_CATALOG") or None,
        app_id=env.get("POPSTREAM_APP_ID", "popstream"),
        max_message_bytes=_int(env, "POPSTREAM_MAX_MESSAGE_BYTES", 1_048_576),
        session_timeout=_float(env, "POPSTREAM_SESSION_TIMEOUT", 30.0),
        fast_path=_bool(env, "POPSTREAM_FAST_PATH", True),
        instance_id=env.get("POPSTREAM_INSTANCE_ID") or None,
        future_horizon=_float(env, "POPSTREAM_FUTURE_HORIZON", 3 * DAY),
        export=env.get("POPSTREAM_EXPORT", "alerting").strip().lower() or "alerting",
        watchlist=_path(env, "POPSTREAM_WATCHLIST"),
        grafana_url=env.get("POPSTREAM_GRAFANA_URL", "").strip() or None,
    )
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None}).validate()
