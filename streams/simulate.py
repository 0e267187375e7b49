"""Realistic live traffic for demos and benchmarks: ``popstream simulate``.

Two phases. *Backfill*: the last ``history_days`` of a generated marketplace
(:mod:`streams.generator`) are published as fast as the broker takes them, so the
metrics mean something from the first second. *Live*: at ``rate`` events/s, new
orders are placed now, each with the whole life the generator gives an order —
shipment (on time or late), carrier deliveries against the promised ``deliver_by``,
cancellations, feedback, claims (item-not-received too), refunds, returns, buyer
messages and the seller's replies — on a fast clock: a day of an order's life
lasts ``ship_window_minutes / 2`` (so ``ship_by`` is about ``ship_window_minutes``
away and late shipments and deliveries show up during a demo). Each event is sent
when its time comes. The 48 h a buyer message has for its reply stays real time:
live replies all come within it, and an unanswered message comes due 48 h later
(the backfill carries late replies). A share of sellers *drifts*: their late,
cancellation, defect, return and response propensities move from healthy to bad
over ``drift_minutes``, so they cross their targets while you watch. Follow-up
events that the backfill placed in the future are sent when their time comes.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.engine.events import US_PER_DAY, parse_timestamp
from streams.generator import (
    DRIFTING,
    HEALTHY,
    LogSpec,
    Profile,
    generate,
    mix_profiles,
    order_events,
    seller_ids,
)
from streams.runtime.producer import EventProducer
from streams.settings import Settings

_US_PER_S = 1_000_000


@dataclass(frozen=True, slots=True)
class SimulationSpec:
    sellers: int = 50
    rate: float = 200.0  # live events per second
    duration: float | None = None  # seconds of live traffic; None = until cancelled
    history_days: int = 30
    history_orders_per_seller_per_day: float = 3.0
    drifting_share: float = 0.1
    drift_minutes: float = 5.0
    ship_window_minutes: float = 3.0
    seed: int = 7


@dataclass
class SimulationStats:
    backfilled: int = 0
    live: int = 0


def _now_us() -> int:
    return time.time_ns() // 1000


class _Live:
    """State of the live phase: the events of live orders not yet due (a heap by
    time), per-seller drift."""

    def __init__(self, spec: SimulationSpec, start_us: int) -> None:
        self.spec = spec
        self.rnd = random.Random(spec.seed + 1)
        self.sellers = seller_ids(spec.sellers)
        self.drifting = set(self.rnd.sample(self.sellers,
                                            round(spec.sellers * spec.drifting_share)))
        self.start_us = start_us
        self.day = max(1440, int(spec.ship_window_minutes * 60 * _US_PER_S / 2))
        self.scheduled: list[tuple[int, int, dict[str, Any]]] = []  # (at, seq, event)
        self.n = 0
        self.seq = 0

    def profile(self, seller: str, now: int) -> Profile:
        if seller not in self.drifting:
            return HEALTHY
        weight = min(1.0, (now - self.start_us) / (self.spec.drift_minutes * 60 * _US_PER_S))
        return mix_profiles(HEALTHY, DRIFTING, weight)

    def next_event(self, now: int) -> dict[str, Any]:
        """The earliest scheduled event if due, else a new order placed ``now``
        (its later events scheduled)."""
        if self.scheduled and self.scheduled[0][0] <= now:
            return heapq.heappop(self.scheduled)[2]
        self.n += 1
        seller = self.sellers[self.rnd.randrange(len(self.sellers))]
        order_id = f"{seller}-L{self.spec.seed}-{self.n:09d}"
        (_, order), *later = order_events(self.rnd, seller, self.n, now,
                                          self.profile(seller, now), order_id=order_id,
                                          day=self.day)
        for at, event in later:
            self.seq += 1
            heapq.heappush(self.scheduled, (at, self.seq, event))
        return order


async def simulate(
    settings: Settings,
    spec: SimulationSpec,
    progress: Callable[[SimulationStats], None] | None = None,
) -> SimulationStats:
    """Publish the backfill, then live traffic until ``spec.duration`` elapses."""
    stats = SimulationStats()
    start = _now_us()
    history = LogSpec(
        sellers=spec.sellers,
        orders_per_seller_per_day=spec.history_orders_per_seller_per_day,
        days=spec.history_days,
        end_us=start - US_PER_DAY // 24,
        drifting_share=0.0,
        seed=spec.seed,
    )
    later: list[tuple[int, int, dict[str, Any]]] = []  # backfill follow-ups not due yet
    async with EventProducer(settings, linger_ms=20) as producer:
        for n, event in enumerate(generate(history)):
            at = parse_timestamp(event["occurred_at"])
            if at > start:
                heapq.heappush(later, (at, n, event))
                continue
            await producer.send(event)
            stats.backfilled += 1
            if progress is not None and stats.backfilled % 5000 == 0:
                progress(stats)
        await producer.flush()
        live = _Live(spec, _now_us())
        began = time.monotonic()
        sent_at_start = 0
        while spec.duration is None or time.monotonic() - began < spec.duration:
            now = _now_us()
            due = int((time.monotonic() - began) * spec.rate) - sent_at_start
            for _ in range(max(0, due)):
                await producer.send(live.next_event(now))
                stats.live += 1
                sent_at_start += 1
            now = _now_us()
            while later and later[0][0] <= now:
                await producer.send(heapq.heappop(later)[2])
                stats.live += 1
            if progress is not None:
                progress(stats)
            await asyncio.sleep(0.05)
        await producer.flush()
    return stats
