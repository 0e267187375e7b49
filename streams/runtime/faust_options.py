"""The keyword arguments of ``faust.App``: every Faust setting popstream decides.

Kept apart from the worker's wiring so the choices (and why) are in one screen,
and so they can be tested without starting Faust.

Faust is configured here and nowhere else. In particular, not by the process
environment: ``faust.Settings`` reads unprefixed variables (``WEB_PORT``,
``WEB_HOST``, ``BROKER_URL``, ``APP_DEBUG``...) and they win over the keyword
arguments. Kubernetes injects ``WEB_PORT=tcp://10.0.0.11:80`` into every pod of a
namespace with a Service named ``web``, which crashed the worker; so the App gets
an empty ``env``, and :func:`scrub_faust_environment` removes the ``FAUST_*`` /
``F_*`` variables Faust reads once, at import.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any, Final

from streams.settings import Settings

# What faust/__init__.py and faust/types/_env.py read from os.environ at import,
# under the prefixes FAUST_ and F_ (WEB_BIND is looked up as F_WEB_BIND).
_IMPORT_TIME_NAMES: Final = (
    "DEBUG", "WORKDIR", "DATADIR", "BLOCKING_TIMEOUT", "FORCE_BLOCKING_TIMEOUT",
    "CONSOLE_PORT", "STRICT", "WEB_PORT", "F_WEB_BIND", "WEB_TRANSPORT", "LOOP",
)
FAUST_IMPORT_VARIABLES: Final = tuple(
    prefix + name for name in _IMPORT_TIME_NAMES for prefix in ("FAUST_", "F_")
)


def faust_options(settings: Settings, broker_urls: list[str], credentials: Any) -> dict[str, Any]:
    """``faust.App(app_id, **faust_options(...))``."""
    message_cap = max(settings.max_message_bytes, 4 << 20)
    return {
        # Settings come from these arguments only, never from os.environ.
        "env": {},
        "debug": False,
        "broker": broker_urls,
        "broker_credentials": credentials,
        "store": settings.store,
        "datadir": str(settings.data_dir),
        "web_port": settings.web_port,
        # web_bind is the address the server listens on; web_host only names the
        # worker in URLs (canonical_url, which the group assignment carries).
        "web_bind": settings.web_host,
        "web_host": settings.web_host,
        "web_transport": "tcp://",
        "web_enabled": True,
        # Faust's own endpoints: /router and /table expose the topology and the
        # table contents to anyone who can reach the port, /graph and the stats
        # index are debugging aids. popstream serves its own /metrics and /api.
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_metrics_enabled": False,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication,
        "topic_allow_declare": True,
        "producer_max_request_size": message_cap,
        "consumer_max_fetch_size": message_cap,
        "broker_commit_every": 10_000,
        "broker_session_timeout": settings.session_timeout,
        "consumer_group_instance_id": settings.instance_id,
        "broker_heartbeat_interval": max(1.0, settings.session_timeout / 6),
        "broker_rebalance_timeout": max(settings.session_timeout, 10.0),
        "broker_commit_interval": settings.flush_interval,
        "table_cleanup_interval": 3600.0,
        "stream_wait_empty": False,
        "logging_config": None,
    }


def scrub_faust_environment(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove the variables Faust reads at import (``FAUST_WEB_PORT``,
    ``F_DATADIR``, ``FAUST_LOOP``...) from ``environ`` (default ``os.environ``);
    return their names.

    Call it before ``faust`` is first imported: ``FAUST_WEB_PORT=tcp://...``
    (a Service named ``faust-web``) otherwise fails the import itself, and
    ``FAUST_LOOP`` swaps the event loop. Nothing of popstream's is configured
    through them.
    """
    env = os.environ if environ is None else environ
    removed = [name for name in FAUST_IMPORT_VARIABLES if name in env]
    for name in removed:
        del env[name]
    return removed


def harden_worker(worker: Any) -> None:
    """Adjust a ``faust.Worker`` after construction: no progress spinner.

    The spinner writes cursor escapes (``ESC[?25l`` / ``ESC[?25h``) to stdout even
    when stdout is a file or a pipe, and progress on a terminal is what our logs
    are for.
    """
    worker.spinner = None
