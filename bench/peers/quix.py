"""Quix Streams contenders: ``--idle`` iterates the event topics and does nothing;
otherwise the six metrics the textbook way (:mod:`bench.peers.textbook`) in Quix's
per-key State (RocksDB, changelogged), one event at a time.

The seven topics are concatenated into one StreamingDataFrame so that an order's
events, wherever they arrive, meet in one state store keyed by seller (the Kafka
message key)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from bench.peers.common import Tally, parse_args
from bench.peers.textbook import Textbook
from streams.engine.events import decode_event, parse_timestamp
from streams.errors import InvalidEvent


def main() -> None:
    idle = "--idle" in sys.argv
    if idle:
        sys.argv.remove("--idle")
    args = parse_args(__doc__ or "")
    from quixstreams import Application

    tally = Tally(args)
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=str(args.data_dir),
        loglevel=logging.WARNING,
    )
    frames = [app.dataframe(app.topic(name, key_deserializer="str", value_deserializer="bytes"))
              for name in args.topics.split(",")]
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    final: dict[str, Any] = {}

    if idle:
        def count(value: bytes, key: Any, timestamp: int, headers: Any) -> None:
            if tally.seen(timestamp):
                tally.finish()

        sdf.update(count, metadata=True)
    else:
        book = Textbook(parse_timestamp(args.as_of))

        def metrics(value: bytes, key: Any, timestamp: int, headers: Any, state: Any) -> None:
            try:
                ev = decode_event(value)
            except InvalidEvent:
                tally.invalid += 1
            else:
                book.apply(ev, state.get, state.set)
                counts = state.get("c")
                if counts is not None:
                    final[ev.seller_id] = counts
            if tally.seen(timestamp):
                tally.finish(final)

        sdf.update(metrics, stateful=True, metadata=True)
    app.run()


if __name__ == "__main__":
    main()
