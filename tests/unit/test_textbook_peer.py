"""The benchmark's textbook implementation (bench/peers/textbook.py) computes what
the engine computes: otherwise the peer comparison would compare different work."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bench.peers.textbook import Textbook, counts_of
from streams.engine.engine import Engine
from streams.engine.events import InvalidEvent, decode_event, parse_timestamp
from streams.generator import LogSpec, generate

pytestmark = pytest.mark.unit

AS_OF = parse_timestamp("2024-06-15T00:00:00Z")


def _events(seed: int) -> list[Any]:
    spec = LogSpec(sellers=12, orders_per_seller_per_day=1.5, days=95, end_us=AS_OF, seed=seed)
    import orjson

    out = []
    for doc in generate(spec):
        try:
            out.append(decode_event(orjson.dumps(doc)))
        except InvalidEvent:
            continue
    return out


def _textbook(events: list[Any]) -> dict[str, dict[str, list[int]]]:
    book = Textbook(AS_OF)
    stores: dict[str, dict[str, Any]] = {}
    for ev in events:
        store = stores.setdefault(ev.seller_id, {})
        book.apply(ev, store.get, store.__setitem__)
    return {sid: store["c"] for sid, store in sorted(stores.items()) if "c" in store}


def _engine(events: list[Any]) -> dict[str, dict[str, list[int]]]:
    engine = Engine(now=AS_OF, fixed_clock=True)
    for ev in events:
        engine.apply(ev)
    return {sid: counts for sid, counts in counts_of(engine.report()).items()
            if any(den for _, den in counts.values())}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_textbook_equals_engine_in_log_order_and_shuffled(seed: int) -> None:
    events = _events(seed)
    assert len(events) > 1000
    assert _textbook(events) == _engine(events)
    shuffled = events + random.Random(seed).sample(events, len(events) // 10)  # redeliveries
    random.Random(seed).shuffle(shuffled)
    assert _textbook(shuffled) == _engine(events)


def test_textbook_counts_every_metric_somewhere() -> None:
    counts = _textbook(_events(4))
    for metric in next(iter(counts.values())):
        assert any(c[metric][0] for c in counts.values()), metric
