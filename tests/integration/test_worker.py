"""The worker on a real Kafka broker: exact metrics, dead letters, crashes, rebalances.

Every test gets its own topic prefix and consumer group, produces a generated log
shuffled across the nine topics (with redeliveries, bulk arrays and invalid
messages), and compares what the workers serve with the plain reference
implementation computed on the same valid events.
"""

from __future__ import annotations

import contextlib
import gzip
import random
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.engine.events import Event, decode_event, parse_timestamp, split_batch
from streams.errors import InvalidEvent
from streams.generator import LogSpec, generate
from streams.runtime.topics import TOPIC_OF_TYPE, TopicNames, create_topics
from streams.settings import from_env
from tests.integration.harness import Worker, consume_all, produce, run, wait_equal, wait_for
from tests.reference import reference_report

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

AS_OF = "2024-06-15T00:00:00Z"
MAX_BYTES = 65_536


@dataclass
class Stack:
    bootstrap: str
    tmp: Path
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}-")
    app_id: str = field(default_factory=lambda: f"ps-{uuid.uuid4().hex[:8]}")
    workers: list[Worker] = field(default_factory=list)
    store: str = "memory://"

    @property
    def env(self) -> dict[str, str]:
        return {"POPSTREAM_TOPIC_PREFIX": self.prefix, "POPSTREAM_APP_ID": self.app_id,
                "POPSTREAM_MAX_MESSAGE_BYTES": str(MAX_BYTES),
                "POPSTREAM_SESSION_TIMEOUT": "6", "POPSTREAM_PARTITIONS": "4",
                "POPSTREAM_STORE": self.store,
                # Every seller's series: these tests check each one against the reference.
                "POPSTREAM_EXPORT": "all"}

    def worker(self, name: str) -> Worker:
        w = Worker(self.bootstrap, self.env, self.tmp, AS_OF, name)
        self.workers.append(w)
        return w

    def topic(self, event_type: str) -> str:
        return TopicNames(self.prefix).for_type(event_type)  # type: ignore[arg-type]


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(kafka_bootstrap, tmp_path)
    settings = from_env({}, bootstrap_servers=kafka_bootstrap, topic_prefix=s.prefix,
                        partitions=4)
    run(create_topics(settings))
    yield s
    for w in s.workers:
        w.stop()


def generated(sellers: int, seed: int) -> list[dict[str, Any]]:
    spec = LogSpec(sellers=sellers, orders_per_seller_per_day=0.6, days=95,
                   end_us=parse_timestamp(AS_OF), seed=seed, drifting_share=0.3)
    return list(generate(spec))


def messages_for(stack: Stack, events: list[dict[str, Any]], seed: int,
                 ) -> list[tuple[str, bytes, bytes]]:
    """Shuffled across topics, some grouped into bulk arrays, 5 % redelivered."""
    rnd = random.Random(seed)
    by_stream: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for ev in events:
        by_stream.setdefault((ev["type"], ev["seller_id"]), []).append(ev)
    out: list[tuple[str, bytes, bytes]] = []
    for (kind, seller), evs in by_stream.items():
        topic, key = stack.topic(kind), seller.encode()
        while evs:
            size = 3 if rnd.random() < 0.05 else 1  # a bulk producer's array
            chunk, evs = evs[:size], evs[size:]
            value = orjson.dumps(chunk) if size > 1 else orjson.dumps(chunk[0])
            out.append((topic, key, value))
    rnd.shuffle(out)
    out += [out[rnd.randrange(len(out))] for _ in range(len(out) // 20)]  # redeliveries
    return out


def valid_events(msgs: list[tuple[str, bytes, bytes]]) -> list[Event]:
    """The events of ``msgs`` that decode, in produce order (arrays flattened)."""
    events: list[Event] = []
    for _, _, value in msgs:
        try:
            batch = split_batch(value)
        except InvalidEvent:
            continue
        for item in [value] if batch is None else [bytes(b) for b in batch]:
            with contextlib.suppress(InvalidEvent):
                events.append(decode_event(item))
    return events


def expected_of(msgs: list[tuple[str, bytes, bytes]]) -> dict[str, Any]:
    return reference_report(valid_events(msgs), parse_timestamp(AS_OF))


def union(*workers: Worker) -> dict[str, Any] | None:
    merged: dict[str, Any] = {}
    for w in workers:
        sellers = w.sellers()
        if sellers is None:
            return None
        if set(sellers) & set(merged):
            return None  # two owners of one seller: a rebalance in flight
        merged.update(sellers)
    return merged


def gauges(worker: Worker) -> dict[tuple[str, str, str], float]:
    text = worker.get("/metrics")
    assert text is not None
    return {
        (s.name, s.labels.get("seller_id", ""), s.labels.get("metric", "")): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if s.name.startswith("popstream_seller_metric")
    }


def test_gauges_equal_the_reference_and_bad_input_is_dead_lettered(stack: Stack) -> None:
    events = generated(sellers=25, seed=3)
    msgs = messages_for(stack, events, seed=3)
    first_order = next(e for e in reversed(events) if e["type"] == "order")  # in window
    conflicting = dict(first_order, event_id="conflict-1", ship_by="2024-01-01T00:00:00Z")
    good_shipment = next(e for e in events if e["type"] == "shipment")
    bad: list[tuple[str, bytes, bytes, str]] = [
        (stack.topic("order"), b"S000001", b"{not json", "not valid JSON"),
        (stack.topic("feedback"), b"S000001", orjson.dumps(
            {"event_id": "bad-1", "type": "feedback", "seller_id": "S000001",
             "order_id": "x", "occurred_at": "2024-06-01T00:00:00Z", "rating": 9}), "rating"),
        (stack.topic("claim"), b"S000001", orjson.dumps(
            {"event_id": "bad-2", "type": "teleport", "seller_id": "S000001",
             "occurred_at": "2024-06-01T00:00:00Z"}), "unknown event type"),
        (stack.topic("order"), b"S000001", b'{"pad":"' + b"x" * (MAX_BYTES + 10) + b'"}',
         "oversized"),
        (stack.topic("message"), b"S000001", orjson.dumps(
            {"event_id": "bad-3", "type": "message", "seller_id": "S000001",
             "message_id": "m", "sender": "buyer", "occurred_at": "2024-06-01T00:00:00"}),
         "timezone"),
        (stack.topic("order"), first_order["seller_id"].encode(), orjson.dumps(conflicting),
         "already exists"),
    ]
    batch_bad = {"event_id": "bad-4", "type": "shipment", "seller_id": good_shipment["seller_id"],
                 "occurred_at": "2024-06-01T00:00:00Z"}  # no order_id
    msgs.append((stack.topic("shipment"), good_shipment["seller_id"].encode(),
                 orjson.dumps([good_shipment, batch_bad])))
    order_topic = stack.topic("order")
    # The conflicting order must follow the original in its partition: put it last.
    all_msgs = msgs + [(t, k, v) for t, k, v, _ in bad]
    run(produce(stack.bootstrap, all_msgs))
    expected = expected_of([m for m in all_msgs if m[2] != orjson.dumps(conflicting)])

    worker = stack.worker("w1")
    got = wait_for(lambda: worker.sellers() == expected and worker.sellers(), 120,
                   "the worker's sellers to equal the reference")
    assert len(got) == 25

    g = gauges(worker)
    # What Prometheus asks for: the same page, gzip-compressed (streamed in parts).
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}/metrics",
                                     headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        zipped = gzip.decompress(response.read())
    assert {(s.name, s.labels.get("seller_id", ""), s.labels.get("metric", "")): s.value
            for family in text_string_to_metric_families(zipped.decode())
            for s in family.samples if s.name.startswith("popstream_seller_metric")} == g
    for seller, metrics in expected.items():
        for name, mv in metrics.items():
            ratio = g.get(("popstream_seller_metric_ratio", seller, name))
            if mv["denominator"] == 0:
                assert ratio is None, "no series for a zero denominator"
                continue
            assert ratio == mv["value"]
            assert g[("popstream_seller_metric_numerator_orders", seller, name)] == mv["numerator"]
            assert g[("popstream_seller_metric_denominator_orders", seller, name)] == (
                mv["denominator"])

    dlq = run(consume_all(stack.bootstrap, TopicNames(stack.prefix).deadletter, expect=7))
    reasons = [dict(m.headers)["popstream-reason"].decode() for m in dlq]
    assert len(dlq) == 7, reasons
    for _, _, value, why in bad:
        matches = [m for m in dlq if m.value == value]
        assert len(matches) == 1, f"dead letter for {why!r}"
        headers = dict(matches[0].headers)
        assert why in headers["popstream-reason"].decode()
        assert headers["popstream-topic"].decode().startswith(stack.prefix)
        assert int(headers["popstream-offset"]) >= 0
    assert any(r.startswith("element 1:") and "order_id" in r for r in reasons)
    assert order_topic.startswith(stack.prefix)


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_kill_9_during_processing_then_restart_is_exact(stack: Stack, store: str) -> None:
    stack.store = store
    msgs = messages_for(stack, generated(sellers=300, seed=5), seed=5)
    expected = expected_of(msgs)
    quarter = len(msgs) // 4
    run(produce(stack.bootstrap, msgs[:quarter]))
    first = stack.worker("first")

    def processed() -> float:
        text = first.get("/metrics")
        if text is None:
            return 0.0
        return sum(s.value for f in text_string_to_metric_families(text.decode())
                   for s in f.samples if s.name == "popstream_messages_consumed_total")

    wait_for(lambda: processed() >= quarter, 120, "the first quarter to be consumed")
    # The rest arrives while the worker runs; kill it while that stream flows.
    rest = threading.Thread(target=lambda: run(produce(stack.bootstrap, msgs[quarter:],
                                                       pace=20_000)))
    rest.start()
    at_kill = wait_for(lambda: (n := processed()) > quarter and n, 60,
                       "the worker to be consuming the rest")
    first.kill9()
    rest.join()
    assert at_kill < len(msgs), "killed after the end: not a mid-processing crash"
    second = stack.worker("second")
    wait_equal(second, expected, 180, "the restarted worker to equal the reference")


def test_kill_9_with_static_membership_takes_partitions_straight_back(stack: Stack) -> None:
    """With POPSTREAM_INSTANCE_ID the restarted worker is the same group member: it
    gets its partitions at once, not after the (here 60 s) session timeout."""
    msgs = messages_for(stack, generated(sellers=100, seed=6), seed=6)
    expected = expected_of(msgs)
    run(produce(stack.bootstrap, msgs))
    env = {**stack.env, "POPSTREAM_SESSION_TIMEOUT": "60", "POPSTREAM_INSTANCE_ID": "w-1"}
    first = Worker(stack.bootstrap, env, stack.tmp, AS_OF, "static-1")
    stack.workers.append(first)
    wait_equal(first, expected, 120, "the first worker to be exact")
    wait_for(lambda: (h := first.get("/health")) and h["messages_consumed"] == len(msgs),
             60, "every message consumed")
    lag = "popstream_consumer_lag_messages"
    wait_for(lambda: (text := first.get("/metrics")) and lag.encode() + b"{" in text and all(
        s.value == 0 for f in text_string_to_metric_families(text.decode())
        for s in f.samples if s.name == lag), 60, "offsets committed (state persisted)")
    first.kill9()
    second = Worker(stack.bootstrap, env, stack.tmp, AS_OF, "static-2", port=first.port)
    stack.workers.append(second)
    # Well inside the 60 s session timeout that a new member would have to wait out.
    wait_equal(second, expected, 40, "the restarted member to be exact")


def test_two_workers_share_then_one_dies(stack: Stack) -> None:
    events = generated(sellers=40, seed=9)
    msgs = messages_for(stack, events, seed=9)
    half = len(msgs) // 2
    run(produce(stack.bootstrap, msgs[:half]))
    a = stack.worker("a")
    wait_equal(a, expected_of(msgs[:half]), 120, "worker a alone")
    b = stack.worker("b")
    run(produce(stack.bootstrap, msgs[half:]))
    expected = expected_of(msgs)

    def shared() -> tuple[set[str], set[str]] | None:
        got_a, got_b = a.sellers(), b.sellers()
        if not (got_a and got_b and union(a, b) == expected):
            return None
        series = {seller for _, seller, _ in gauges(a)}
        if a.sellers() != got_a:
            return None  # a rebalance moved on while we looked: try again
        return set(got_a), series

    a_sellers, a_series = wait_for(
        shared, 180, "both workers to own a share, together equal to the reference")
    assert a_series <= a_sellers, "stale series left on the old owner"
    assert a_sellers != set(expected)
    b.kill9()
    wait_equal(a, expected, 180, "the survivor to own everything exactly")
    assert {seller for _, seller, _ in gauges(a)} == {
        s for s, ms in expected.items() if any(m["denominator"] for m in ms.values())}


def test_topics_create_is_idempotent(stack: Stack) -> None:
    settings = from_env({}, bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix)
    report = run(create_topics(settings))
    assert report.created == []
    names = TopicNames(stack.prefix)
    assert set(report.existing) == {stack.prefix + t for t in TOPIC_OF_TYPE.values()} | {
        names.deadletter, names.status}
    assert all(n == 4 for n in report.existing.values())


def test_time_moves_on_its_own(stack: Stack) -> None:
    """With the wall clock, an unshipped order turns late when ship_by passes,
    with no new event."""
    import time

    from streams.engine.events import format_us

    now = time.time_ns() // 1000
    order = {"event_id": "live-1", "type": "order", "seller_id": "live", "order_id": "o1",
             "occurred_at": format_us(now - 1_000_000), "ship_by": format_us(now + 20_000_000)}
    run(produce(stack.bootstrap, [(stack.topic("order"), b"live", orjson.dumps(order))]))
    worker = Worker(stack.bootstrap, stack.env, stack.tmp, None, "clock")
    stack.workers.append(worker)

    def late() -> tuple[int, int] | None:
        sellers = worker.sellers()
        if not sellers or "live" not in sellers:
            return None
        mv = sellers["live"]["late_shipment_rate"]
        return (mv["numerator"], mv["denominator"])

    assert wait_for(late, 15, "the order to be seen, on time") == (0, 1)
    assert wait_for(lambda: late() == (1, 1), 30, "the order to turn late by itself")
