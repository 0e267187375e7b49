"""The floor of Faust itself: an agent that iterates the event topics and does
nothing with what it reads. No Faust app that does real work per message can be
faster than this on the stock path."""

from __future__ import annotations

from typing import Any

from bench.peers.common import Tally, parse_args
from bench.peers.faust_app import make_app, run


def main() -> None:
    args = parse_args(__doc__ or "")
    tally = Tally(args)
    app, topic = make_app(args)

    @app.agent(topic)  # type: ignore[untyped-decorator]
    async def idle(stream: Any) -> None:
        async for event in stream.events():
            if tally.seen(event.message.timestamp * 1000):
                tally.finish()

    run(app)


if __name__ == "__main__":
    main()
