"""No message, size or outage stops a worker (issue #9), on a real Kafka broker.

Each class of hostile input is sent between valid events — alone, and mixed in one
bulk array: the worker never restarts, every bad message is on the dead-letter
topic with its reason, every valid event is applied, and a ``kill -9`` and restart
afterwards is still exact against ``tests/reference.py``.
"""

from __future__ import annotations

import hashlib
import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.engine.events import Event, decode_event, parse_timestamp
from streams.runtime.topics import TopicNames, owner_partition
from tests.integration.harness import Worker, consume_all, run, wait_equal, wait_for
from tests.integration.test_worker import AS_OF, MAX_BYTES, Stack, generated, messages_for
from tests.integration.test_worker import stack as stack  # the fixture
from tests.reference import reference_report

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

Msg = tuple[str, bytes | None, bytes, int | None]  # topic, key, value, explicit partition


async def send_all(bootstrap: str, messages: list[Msg], compression: str | None = None,
                   max_request: int = 8 << 20) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                compression_type=compression, max_request_size=max_request)
    await producer.start()
    try:
        for topic, key, value, partition in messages:
            await producer.send(topic, value=value, key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def status_of(worker: Worker, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def counter(worker: Worker, name: str) -> dict[str, float]:
    text = worker.get("/metrics")
    if text is None:
        return {}
    return {",".join(f"{k}={v}" for k, v in sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(text.decode())
            for s in f.samples if s.name == name}


def with_bad_utf8(event: dict[str, Any], field: str) -> bytes:
    """The event's JSON with invalid UTF-8 (a lone continuation byte) inside ``field``."""
    marker = "MARKER-7f3a"
    doc = orjson.dumps(dict(event, **{field: marker}))
    return doc.replace(marker.encode(), b"ab\x80\xffcd")


def nested(depth: int) -> bytes:
    return b'{"ignored": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("fast_path", ["1", "0"])
def test_hostile_messages_between_valid_events(stack: Stack, fast_path: str) -> None:
    env = {**stack.env, "POPSTREAM_FAST_PATH": fast_path}
    events = generated(sellers=12, seed=21)
    valid = messages_for(stack, events, seed=21)
    good: list[Event] = [decode_event(orjson.dumps(e)) for e in events]
    orders = [e for e in events if e["type"] == "order"]
    x = orders[-1]
    y = next(o for o in reversed(orders) if o["seller_id"] != x["seller_id"])
    sx, sy = x["seller_id"], y["seller_id"]
    order_t = stack.topic("order")
    owner = owner_partition(sx, 4)

    def fresh(n: int, seller: str = sx) -> dict[str, Any]:
        return dict(x, seller_id=seller, event_id=f"h-{n}", order_id=f"hostile-{n}")

    refund = {"event_id": "h-r", "type": "refund", "seller_id": sx, "order_id": x["order_id"],
              "occurred_at": x["occurred_at"]}
    bad: list[tuple[Msg, str]] = []
    for n, field in enumerate(["seller_id", "order_id", "event_id", "type", "marketplace"]):
        bad.append(((order_t, sx.encode(), with_bad_utf8(fresh(100 + n), field), None),
                    "invalid UTF-8 at byte"))
    bad += [
        ((order_t, sx.encode(), orjson.dumps(fresh(1))[:-1] + b',"x":' + nested(10_000) + b"}",
          None), "nesting deeper than"),
        ((order_t, sx.encode(), b"\x00" * (MAX_BYTES - 16), None), "not valid JSON"),
        ((order_t, sy.encode(), orjson.dumps(fresh(2)), None), "is not the event's seller_id"),
        ((order_t, sx.encode(), orjson.dumps(fresh(3)), (owner + 1) % 4), "belongs on partition"),
        ((order_t, sx.encode(), orjson.dumps(refund), None), "belong on"),
    ]
    mixed = [fresh(10), fresh(11, sy), refund, orjson.loads(b"{}"), fresh(12)]
    mixed_value = orjson.dumps(mixed)
    bad_utf8_element = with_bad_utf8(fresh(13), "order_id")
    mixed_value = mixed_value[:-1] + b"," + bad_utf8_element + b"]"
    mixed_reasons = ["element 1: message key", "element 2: a 'refund' event on topic",
                     "element 3: ", "element 5: invalid UTF-8"]
    good += [decode_event(orjson.dumps(fresh(10))), decode_event(orjson.dumps(fresh(12)))]

    rnd = random.Random(21)
    plain: list[Msg] = [(t, k, v, None) for t, k, v in valid]
    for msg, _ in bad:
        plain.insert(rnd.randrange(len(plain) + 1), msg)
    plain.append((order_t, sx.encode(), mixed_value, None))
    run(send_all(stack.bootstrap, plain))
    # A gzip-compressed message whose value is ~3 MB: small on the wire, far over
    # POPSTREAM_MAX_MESSAGE_BYTES and over the dead-letter topic's limit once read.
    huge = b"[" + b" " * 3_000_000 + b"]"
    run(send_all(stack.bootstrap, [(order_t, sx.encode(), huge, None)], compression="gzip"))

    expected = reference_report(good, parse_timestamp(AS_OF))
    worker = Worker(stack.bootstrap, env, stack.tmp, AS_OF, f"hostile-{fast_path}")
    stack.workers.append(worker)
    wait_equal(worker, expected, 120, "every valid event applied")

    dead = run(consume_all(stack.bootstrap, TopicNames(stack.prefix).deadletter,
                           expect=len(bad) + len(mixed_reasons) + 1))
    reasons = [dict(m.headers)["popstream-reason"].decode() for m in dead]
    assert len(dead) == len(bad) + len(mixed_reasons) + 1, reasons
    for (_, _, value, _), why in bad:
        found = [m for m in dead if m.value == value and not dict(
            m.headers)["popstream-reason"].startswith(b"element ")]
        assert len(found) == 1, f"one dead letter for {why!r}: {reasons}"
        assert why in dict(found[0].headers)["popstream-reason"].decode()
    for why in mixed_reasons:
        assert sum(r.startswith(why) for r in reasons) == 1, (why, reasons)
    cut = [m for m in dead if dict(m.headers).get("popstream-truncated") == b"true"]
    assert len(cut) == 1
    headers = dict(cut[0].headers)
    assert headers["popstream-original-size"] == str(len(huge)).encode()
    assert headers["popstream-sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert huge.startswith(cut[0].value)
    assert "oversized" in headers["popstream-reason"].decode()

    assert worker.proc.poll() is None, "the worker stopped:\n" + worker.log_tail()
    assert "Traceback" not in worker.log.read_text(errors="replace")
    invalid = counter(worker, "popstream_events_invalid_total")
    assert sum(invalid.values()) == len(dead), invalid

    # Offsets committed, then kill -9: the restart is exact, and it never serves a
    # partial page on the way (503 until its recovery is done).
    wait_for(lambda: all(v == 0 for v in counter(
        worker, "popstream_consumer_lag_messages").values()) and counter(
        worker, "popstream_consumer_lag_messages"), 60, "offsets committed")
    worker.kill9()
    again = Worker(stack.bootstrap, env, stack.tmp, AS_OF, f"again-{fast_path}",
                   port=worker.port)
    stack.workers.append(again)
    seen: list[int | None] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        code = status_of(again, "/api/sellers")
        seen.append(code)
        if code == 200:
            break
        time.sleep(0.05)
    assert seen[-1] == 200, seen[-20:]
    assert again.sellers() == expected, "the first answer after a restart is complete"
    assert 503 in seen or None in seen
    assert set(seen) <= {None, 503, 200}


def test_a_seller_day_larger_than_a_changelog_record_recovers_exactly(stack: Stack) -> None:
    """200,000 orders of one seller on one UTC day, 128-character ids: the day's
    chunk (~35 MB) is far over the changelog topic's limit; split, it recovers
    exactly after kill -9."""
    env = {**stack.env, "POPSTREAM_MAX_MESSAGE_BYTES": str(1 << 20)}
    seller = "whale"
    day = "2024-06-14T"
    orders = [
        {"event_id": f"e{n}", "type": "order", "seller_id": seller,
         "order_id": f"{n:08d}".ljust(128, "x"),
         "occurred_at": f"{day}{n % 24:02d}:{n % 60:02d}:00Z",
         "ship_by": f"2024-06-16T{n % 24:02d}:00:00Z"}
        for n in range(200_000)
    ]
    messages: list[Msg] = [
        (stack.topic("order"), seller.encode(), orjson.dumps(orders[i:i + 2000]), None)
        for i in range(0, len(orders), 2000)
    ]
    run(send_all(stack.bootstrap, messages, compression="gzip"))
    expected = reference_report([decode_event(orjson.dumps(o)) for o in orders],
                                parse_timestamp(AS_OF))
    first = Worker(stack.bootstrap, env, stack.tmp, AS_OF, "whale-1")
    stack.workers.append(first)
    wait_equal(first, expected, 180, "200,000 orders applied")
    wait_for(lambda: counter(first, "popstream_state_chunks_split_total").get("", 0) > 0
             and all(v == 0 for v in counter(
                 first, "popstream_consumer_lag_messages").values()), 120,
             "a split chunk written and offsets committed")
    assert "Traceback" not in first.log.read_text(errors="replace")
    first.kill9()
    second = Worker(stack.bootstrap, env, stack.tmp, AS_OF, "whale-2")
    stack.workers.append(second)
    wait_equal(second, expected, 240, "the restart to be exact")
    assert second.proc.poll() is None


def test_an_unwritable_dead_letter_topic_pauses_consumption(stack: Stack) -> None:
    """The dead-letter topic refuses every record (its max.message.bytes is cut to
    100 bytes while the worker runs): the worker stops consuming, says why on
    /health, never acks past the bad message, and carries on once it can write."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    deadletter = TopicNames(stack.prefix).deadletter

    async def set_limit(value: str) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            await admin.alter_configs([ConfigResource(
                ConfigResourceType.TOPIC, deadletter, {"max.message.bytes": value})])
        finally:
            await admin.close()

    events = generated(sellers=6, seed=4)
    valid = [(t, k, v, None) for t, k, v in messages_for(stack, events, seed=4)]
    expected = reference_report([decode_event(orjson.dumps(e)) for e in events],
                                parse_timestamp(AS_OF))
    worker = stack.worker("paused")
    wait_for(lambda: status_of(worker, "/api/sellers") == 200, 60, "the worker ready")
    run(set_limit("100"))
    time.sleep(2)  # the broker applies a config change asynchronously
    order_t = stack.topic("order")
    run(send_all(stack.bootstrap, [(order_t, b"nobody", b"{broken", None)]))
    health = wait_for(lambda: (h := worker.get("/health")) and h["status"] == "degraded" and h,
                      60, "/health to say degraded")
    assert "dead letters" in health["problems"]["flush"]
    run(send_all(stack.bootstrap, valid))
    time.sleep(3)
    assert worker.sellers() == {}, "consumed while it could not write dead letters"
    run(set_limit(str(MAX_BYTES + 65_536)))
    wait_equal(worker, expected, 120, "consumption to resume, exactly")
    wait_for(lambda: (worker.get("/health") or {}).get("status") == "ok", 30, "ok again")
    dead = run(consume_all(stack.bootstrap, deadletter, expect=1))
    assert [m.value for m in dead] == [b"{broken"]
    assert worker.proc.poll() is None


def test_sigterm_during_flushes_under_load_exits_0(stack: Stack) -> None:
    events = generated(sellers=200, seed=8)
    msgs = messages_for(stack, events, seed=8)
    for attempt in range(4):
        worker = stack.worker(f"term-{attempt}")
        wait_for(lambda w=worker: status_of(w, "/health") == 200, 60, "the worker up")
        run(send_all(stack.bootstrap, [(t, k, v, None) for t, k, v in msgs[:4000]]))
        time.sleep(0.3 + 0.4 * attempt)
        worker.proc.terminate()
        assert worker.proc.wait(60) == 0, worker.log_tail()
        assert "ProducerClosed" not in worker.log.read_text(errors="replace")


def test_sigterm_at_any_moment_of_start_up_exits_0(stack: Stack) -> None:
    """A SIGTERM while the worker still declares its topics (the producer stops
    under that task) is a stop, not a crash: exit code 0, no crash in the log."""
    for attempt, delay in enumerate((0.0, 0.2, 0.5, 1.0)):
        worker = stack.worker(f"early-{attempt}")
        # From the moment it answers at all (signal handlers in place), recovery and
        # topic checks still under way.
        wait_for(lambda w=worker: status_of(w, "/health") is not None, 60, "an answer")
        time.sleep(delay)
        worker.proc.terminate()
        assert worker.proc.wait(60) == 0, worker.log_tail()
        assert "Crashed" not in worker.log.read_text(errors="replace"), worker.log_tail()


def test_the_clock_moves_and_health_degrades_while_the_broker_is_away(tmp_path: Path) -> None:
    from streams.runtime.broker import free_port, start_broker
    from streams.runtime.topics import create_topics
    from streams.settings import from_env

    port, controller = free_port(), free_port()
    broker = start_broker(tmp_path / "kafka", port=port, controller_port=controller)
    bootstrap = broker.bootstrap_servers
    env = {"POPSTREAM_APP_ID": "outage", "POPSTREAM_SESSION_TIMEOUT": "6",
           "POPSTREAM_PARTITIONS": "4"}
    worker = Worker(bootstrap, env, tmp_path, None, "outage")
    try:
        run(create_topics(from_env({}, bootstrap_servers=bootstrap, partitions=4)))
        wait_for(lambda: (h := worker.get("/health")) and h["status"] == "ok", 90, "ready")
        now = time.time_ns() // 1000
        from streams.engine.events import format_us

        order = {"event_id": "o", "type": "order", "seller_id": "s1", "order_id": "o1",
                 "occurred_at": format_us(now), "ship_by": format_us(now + 3_600_000_000)}
        run(send_all(bootstrap, [("orders", b"s1", orjson.dumps(order), None)]))
        wait_for(lambda: worker.sellers(), 30, "the order applied")
        broker.process.terminate()
        broker.process.wait(30)
        before = worker.get("/health")["as_of"]
        health = wait_for(lambda: (h := worker.get("/health")) and h["status"] == "degraded"
                          and h, 90, "degraded while the broker is away")
        assert "flush" in health["problems"]
        time.sleep(2)
        assert worker.get("/health")["as_of"] > before, "the clock froze"
        assert worker.proc.poll() is None
        broker = start_broker(tmp_path / "kafka", port=port, controller_port=controller)
        wait_for(lambda: (worker.get("/health") or {}).get("status") == "ok", 120,
                 "ok once the broker is back")
        assert worker.sellers() is not None
    finally:
        worker.stop()
        broker.stop()
