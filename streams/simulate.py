"""Realistic live traffic for demos and benchmarks: ``popstream simulate``.

Two phases. *Backfill*: the last ``history_days`` of a generated marketplace
(:mod:`streams.generator`) are published as fast as the broker takes them, so the
metrics mean something from the first second. *Live*: at ``rate`` events/s, new
orders are placed now with a short ``ship_by`` (minutes, so late shipments show up
during a demo), shipped on time or late, and recent orders receive feedback,
claims, refunds, cancellations and buyer messages. A share of sellers *drifts*:
their late, cancellation and defect probabilities grow from healthy to bad over
``drift_minutes``, so they cross their targets while you watch. Follow-up events
that the backfill placed in the future are sent when their time comes.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.engine.events import US_PER_DAY, format_us, parse_timestamp
from streams.generator import (
    DRIFTING,
    HEALTHY,
    LogSpec,
    Profile,
    generate,
    mix_profiles,
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
    """State of the live phase: open orders, recent orders, per-seller drift."""

    def __init__(self, spec: SimulationSpec, start_us: int) -> None:
        self.spec = spec
        self.rnd = random.Random(spec.seed + 1)
        self.sellers = seller_ids(spec.sellers)
        self.drifting = set(self.rnd.sample(self.sellers,
                                            round(spec.sellers * spec.drifting_share)))
        self.start_us = start_us
        self.open: list[tuple[int, str, str]] = []  # heap of (ship_at, seller, order)
        self.recent: list[tuple[str, str]] = []
        self.n = 0

    def profile(self, seller: str, now: int) -> Profile:
        if seller not in self.drifting:
            return HEALTHY
        weight = min(1.0, (now - self.start_us) / (self.spec.drift_minutes * 60 * _US_PER_S))
        return mix_profiles(HEALTHY, DRIFTING, weight)

    def next_event(self, now: int) -> dict[str, Any]:
        rnd = self.rnd
        self.n += 1
        eid = f"live-{self.spec.seed}-{self.n}"
        if self.open and self.open[0][0] <= now:
            _, seller, order = heapq.heappop(self.open)
            tracking = None if rnd.random() < self.profile(seller, now).no_tracking else (
                f"1Z{rnd.randrange(10**12):012d}")
            self.recent.append((seller, order))
            return {"event_id": eid, "type": "shipment", "seller_id": seller,
                    "order_id": order, "occurred_at": format_us(now), "tracking_id": tracking}
        if self.recent and rnd.random() < 0.35:
            seller, order = self.recent[rnd.randrange(len(self.recent))]
            return self._follow_up(eid, seller, order, now)
        seller = self.sellers[rnd.randrange(len(self.sellers))]
        order = f"{seller}-L{self.spec.seed}-{self.n:09d}"
        window = self.spec.ship_window_minutes * 60 * _US_PER_S
        ship_by = now + int(window)
        p = self.profile(seller, now)
        if rnd.random() < p.seller_cancel:
            self.recent.append((seller, order))
        else:
            late = rnd.random() < p.late
            ship_at = ship_by + int(rnd.uniform(1, 2) * window) if late else (
                now + int(rnd.uniform(0.1, 0.9) * window))
            heapq.heappush(self.open, (ship_at, seller, order))
        return {"event_id": eid, "type": "order", "seller_id": seller, "order_id": order,
                "occurred_at": format_us(now), "ship_by": format_us(ship_by),
                "marketplace": "US", "amount": round(rnd.uniform(5, 300), 2), "currency": "USD"}

    def _follow_up(self, eid: str, seller: str, order: str, now: int) -> dict[str, Any]:
        rnd = self.rnd
        p = self.profile(seller, now)
        base = {"event_id": eid, "seller_id": seller, "order_id": order,
                "occurred_at": format_us(now)}
        scale = 12.0  # follow-ups only reach recent orders: raise their odds
        r = rnd.random()
        if r < p.negative_feedback * scale * 0.3:
            return {**base, "type": "feedback", "rating": rnd.choice((1, 2))}
        if r < p.refund * scale:
            return {**base, "type": "refund", "amount": 10.0, "reason": "not as described"}
        if r < p.refund * scale + p.buyer_message * scale * 0.3:
            return {**base, "type": "message", "message_id": f"{order}-M",
                    "sender": "buyer"}
        if r < p.refund * scale + p.buyer_message * scale * 0.3 + p.a_to_z * scale:
            return {**base, "type": "claim", "claim_type": "a_to_z", "status": "opened"}
        return {**base, "type": "feedback", "rating": rnd.choice((4, 5, 5))}


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
