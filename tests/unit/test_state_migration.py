"""State written before the v1.1 record format restores exactly (issues #12, #13).

``tests/data/v1_state.msgpack`` was written by the last v1-format engine (see
``tests/data/make_v1_state.py``): a log, the clock, a whole-engine snapshot and
every seller's changelog chunks. Today's engine must restore both and report what
the reference computes from the log, then go on: the clock moves (deadlines pass,
held events apply) and the log is delivered again (every event a duplicate).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from streams.engine import orders as rec
from streams.engine.engine import Engine, Outcome
from streams.engine.events import US_PER_DAY, Event, decode_event
from streams.engine.rules import DAY, FORMAT_V2, HAS_ORDER, PURCHASED_AT
from tests.reference import reference_report
from tests.unit.test_engine_properties import _as_dicts

pytestmark = pytest.mark.unit

STATE = msgspec.msgpack.decode((Path(__file__).parent.parent / "data" / "v1_state.msgpack")
                               .read_bytes())
NOW: int = STATE["now"]
EVENTS: list[Event] = [decode_event(doc) for doc in STATE["docs"]]


def _from_chunks() -> Engine:
    engine = Engine(now=NOW, track_dirty=True)
    for seller_id, chunks in STATE["chunks"].items():
        engine.restore_seller_chunks(
            seller_id, {(None if day == -1 else day): data for day, data in chunks.items()})
    return engine


@pytest.mark.parametrize("source", ["snapshot", "chunks"])
def test_v1_state_restores_to_the_reference_and_goes_on(source: str) -> None:
    engine = Engine.restore(STATE["snapshot"]) if source == "snapshot" else _from_chunks()
    assert engine.sellers, "the fixture holds sellers"
    assert _as_dicts(engine.report()) == reference_report(EVENTS, NOW)
    # Every record is in today's format, purchase instants at midnight of their day
    # (the v1 format kept only the day).
    records = [r for s in engine.sellers.values() for r in s.orders.values()]
    assert records
    assert all(rec.record_day(r)[1] & FORMAT_V2 for r in records)
    for r in records:
        fields, _ = rec.unpack(r)
        if fields[rec.FLAGS] & HAS_ORDER:
            assert fields[PURCHASED_AT] == fields[DAY] * US_PER_DAY
    # The log again: nothing new. Then time passes: deadlines and held events.
    assert {engine.apply(e) for e in EVENTS} <= {
        Outcome.DUPLICATE, Outcome.HELD, Outcome.EXPIRED}
    later = NOW + 3 * US_PER_DAY + 1
    engine.advance(later)
    assert _as_dicts(engine.report()) == reference_report(EVENTS, later)


def test_records_keep_the_purchase_instant() -> None:
    """A record packs the instant to the microsecond, negative ones too."""
    for at in (0, 1, US_PER_DAY - 1, 19_889 * US_PER_DAY + 123_456_789, -1,
               -719_162 * US_PER_DAY + 5, 2_932_896 * US_PER_DAY - 1):
        fields = rec.new_fields(0)
        rec.set_instant(fields, at)
        fields[rec.FLAGS] = HAS_ORDER
        back, digests = rec.unpack(rec.pack(fields, b"abcdef"))
        assert (back[PURCHASED_AT], back[DAY], digests) == (at, at // US_PER_DAY, b"abcdef")
        assert rec.record_day(rec.pack(fields, b"")) == (at // US_PER_DAY,
                                                          HAS_ORDER | FORMAT_V2)
