"""The keyword arguments of ``faust.App``: every Faust setting popstream decides.

Kept apart from the worker's wiring so the choices (and why) are in one screen,
and so they can be tested without starting Faust.
"""

from __future__ import annotations

from typing import Any

from streams.settings import Settings


def faust_options(settings: Settings, broker_urls: list[str], credentials: Any) -> dict[str, Any]:
    """``faust.App(app_id, **faust_options(...))``."""
    message_cap = max(settings.max_message_bytes, 4 << 20)
    return {
        "broker": broker_urls,
        "broker_credentials": credentials,
        "store": settings.store,
        "datadir": str(settings.data_dir),
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        "web_enabled": True,
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
