"""A textbook Faust implementation of the six metrics: one event at a time, the
order's and the seller's state in a Faust Table, read and written per event (see
:mod:`bench.peers.textbook` for the state layout)."""

from __future__ import annotations

from typing import Any

from bench.peers.common import Tally, parse_args
from bench.peers.faust_app import make_app, run
from bench.peers.textbook import Textbook
from streams.engine.events import decode_event, parse_timestamp
from streams.errors import InvalidEvent


def main() -> None:
    args = parse_args(__doc__ or "")
    tally = Tally(args)
    app, topic = make_app(args)
    state = app.Table("seller-state", default=None, key_type=str, value_type=None)
    book = Textbook(parse_timestamp(args.as_of))
    final: dict[str, Any] = {}  # each seller's latest counts, for the harness's check

    @app.agent(topic)  # type: ignore[untyped-decorator]
    async def metrics(stream: Any) -> None:
        async for event in stream.events():
            try:
                ev = decode_event(event.value)
            except InvalidEvent:
                tally.invalid += 1
            else:
                prefix = ev.seller_id + "|"

                def get(key: str, prefix: str = prefix) -> Any:
                    return state.get(prefix + key)

                def put(key: str, value: Any, prefix: str = prefix) -> None:
                    state[prefix + key] = value

                book.apply(ev, get, put)
                counts = state.get(prefix + "c")
                if counts is not None:
                    final[ev.seller_id] = counts
            if tally.seen(event.message.timestamp * 1000):
                tally.finish(final)

    run(app)


if __name__ == "__main__":
    main()
