"""The engine equals the reference for every metric of every profile (issue #12).

Contract v1.1 logs (deliveries, returns, item-not-received claims, promises,
replies) under the shipped profiles: at a fixed clock, after a crash during a
flush with at-least-once replay, and as the clock moves on (lagged windows fill
and drain, promises and response deadlines pass by themselves).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.catalog import PROFILES, Catalog, profile_catalog
from streams.engine.engine import Engine
from streams.engine.events import US_PER_DAY, Event, decode_event, to_us
from streams.errors import InvalidEvent
from tests.reference import reference_report
from tests.unit.strategies import NOW, logs
from tests.unit.test_engine_properties import _as_dicts, _feed, _persist

pytestmark = pytest.mark.unit

NOW_US = to_us(NOW)
PROFILE = settings(max_examples=250, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])
CATALOGS = {name: profile_catalog(name) for name in PROFILES}


def _valid(lines: list[bytes]) -> list[Event]:
    out = []
    for line in lines:
        with contextlib.suppress(InvalidEvent):
            out.append(decode_event(line))
    return out


def _recover(table: dict[tuple[str, int | None], bytes], now: int, catalog: Catalog
             ) -> Engine:
    engine = Engine(catalog, now=now, track_dirty=True)
    by_seller: dict[str, dict[int | None, bytes]] = {}
    for (seller_id, chunk), data in table.items():
        by_seller.setdefault(seller_id, {})[chunk] = data
    for seller_id, chunks in by_seller.items():
        engine.restore_seller_chunks(seller_id, chunks)
    engine.take_dirty()
    return engine


@pytest.mark.parametrize("profile", sorted(CATALOGS))
@PROFILE
@given(lines=logs(v11=True))
def test_every_profile_equals_the_reference(profile: str, lines: list[bytes]) -> None:
    catalog = CATALOGS[profile]
    engine = Engine(catalog, now=NOW_US)
    _feed(engine, lines)
    assert _as_dicts(engine.report()) == reference_report(_valid(lines), NOW_US, catalog)


@pytest.mark.parametrize("profile", sorted(CATALOGS))
@PROFILE
@given(lines=logs(v11=True), data=st.data())
def test_crash_midway_and_a_moving_clock(profile: str, lines: list[bytes],
                                         data: st.DataObject) -> None:
    """Flushes at random, a crash during the last one (any prefix of each seller's
    records saved), replay since the last whole flush, then the clock moves on in
    steps (deadlines pass, lagged windows fill and drain) with a recovery at each."""
    catalog = CATALOGS[profile]
    engine = Engine(catalog, now=NOW_US, track_dirty=True)
    table: dict[tuple[str, int | None], bytes] = {}
    flushed_upto = 0
    for i, line in enumerate(lines, start=1):
        _feed(engine, [line])
        if data.draw(st.booleans(), label=f"flush after {i}"):
            _persist(engine, table)
            flushed_upto = i
    _persist(engine, table, cut=lambda seller, n: data.draw(
        st.integers(0, n), label=f"records of {seller} saved"))
    recovered = _recover(table, NOW_US, catalog)
    _feed(recovered, lines[flushed_upto:])
    events = _valid(lines)
    assert _as_dicts(recovered.report()) == reference_report(events, NOW_US, catalog)
    now = NOW_US
    steps = data.draw(st.lists(st.sampled_from(
        [1, 3_600_000_000, US_PER_DAY // 2, US_PER_DAY, 7 * US_PER_DAY, 20 * US_PER_DAY]),
        min_size=1, max_size=4), label="steps")
    for step in steps:
        now += step
        recovered.advance(now)
        expected = reference_report(events, now, catalog)
        assert _as_dicts(recovered.report()) == expected
        _persist(recovered, table)
        assert _as_dicts(_recover(table, now, catalog).report()) == expected
