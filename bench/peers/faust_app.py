"""A Faust app as its documentation writes one, for the Faust contenders.

Defaults throughout (that is the point of a textbook baseline), except what a
benchmark must pin: the broker, an in-memory store, a data dir and web port of
its own, and quiet logs.
"""

from __future__ import annotations

import argparse
from typing import Any

from streams.runtime.broker import free_port


def make_app(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(app, source topic over every event topic, raw bytes)``."""
    import faust

    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=str(args.data_dir),
        web_port=free_port(),
        web_host="127.0.0.1",
        topic_partitions=4,
    )
    topic = app.topic(*args.topics.split(","), key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    return app, topic


def run(app: Any) -> None:
    import faust

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
