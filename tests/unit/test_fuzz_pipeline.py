"""The worker's per-message entry point, fuzzed as an attacker would (issue #9).

``Pipeline.handle`` takes whatever a Kafka message carries — any value, any key,
any topic and partition — and must give every message (every array element)
exactly one outcome, raise nothing, and leave the valid events around the bad
ones applied exactly as if the bad ones had never been sent.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.catalog import default_catalog
from streams.engine.events import decode_event, parse_timestamp, split_batch
from streams.errors import InvalidEvent
from streams.runtime.pipeline import Pipeline
from streams.runtime.topics import TOPIC_OF_TYPE, owner_partition
from streams.settings import from_env
from tests.unit.fuzz_strategies import bad_values, mixed_batches, valid_events

pytestmark = pytest.mark.unit

AS_OF = parse_timestamp("2024-06-15T00:00:00Z")
TOPICS = sorted(TOPIC_OF_TYPE.values())
MAX_BYTES = 8192


def new_pipeline() -> Pipeline:
    p = Pipeline(from_env({}, as_of=AS_OF, max_message_bytes=MAX_BYTES), default_catalog())
    p.ready = True
    return p


def elements(value: bytes | None) -> int:
    """How many outcomes a message must have: one per array element, else one."""
    if value is None or len(value) > MAX_BYTES:
        return 1
    try:
        batch = split_batch(value)
    except InvalidEvent:
        return 1
    return 1 if batch is None else len(batch)


def outcomes(p: Pipeline) -> int:
    return sum(p.metrics.events.counts.values())


def routed(raw: bytes) -> tuple[str, bytes, int]:
    """Where a producer doing it right puts a valid event: its type's topic, keyed
    by its seller, on the partition Kafka's default partitioner picks."""
    doc = orjson.loads(raw)
    seller: str = doc["seller_id"]
    return TOPIC_OF_TYPE[doc["type"]], seller.encode(), owner_partition(seller, 4)


messages = st.tuples(
    st.one_of(bad_values(), valid_events(), mixed_batches().map(lambda b: b[0]),
              mixed_batches(uniform=True).map(lambda b: b[0]), st.none()),
    st.one_of(st.none(), st.binary(max_size=12), st.sampled_from([b"S1", b"s-1", b"\xff"])),
    st.sampled_from([*TOPICS, "not-an-event-topic"]),
    st.integers(0, 3),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=12))
def test_every_message_has_exactly_one_outcome_per_element_and_nothing_raises(
        msgs: list[tuple[bytes | None, bytes | None, str, int]]) -> None:
    p = new_pipeline()
    for offset, (value, key, topic, partition) in enumerate(msgs):
        before = outcomes(p)
        dead = p.handle(value, topic, partition, offset, None, key)
        assert outcomes(p) - before + len(dead) == elements(value), (value, dead)
        assert all(isinstance(raw, bytes) and reason for raw, reason in dead)
    health = p.health()
    assert health["messages_consumed"] == len(msgs)
    p.render_metrics()
    p.dirty_chunks()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid=st.lists(valid_events(), min_size=1, max_size=10),
       bad=st.lists(st.tuples(bad_values(), st.sampled_from(TOPICS), st.integers(0, 3)),
                    min_size=1, max_size=10),
       data=st.data())
def test_valid_events_around_bad_ones_are_applied_as_if_alone(
        valid: list[bytes], bad: list[tuple[bytes, str, int]], data: Any) -> None:
    """Bad messages carry a key that can never be a seller id (invalid UTF-8), so
    even one that happens to decode is refused: the state must equal a pipeline
    that saw only the valid messages, in the same order."""
    mixed: list[tuple[bytes, str, bytes, int]] = [(v, *routed(v)) for v in valid]
    for value, topic, partition in bad:
        at = data.draw(st.integers(0, len(mixed)))
        mixed.insert(at, (value, topic, b"\xff\xfe", partition))
    dirty, clean = new_pipeline(), new_pipeline()
    for offset, (value, topic, key, partition) in enumerate(mixed):
        dirty.handle(value, topic, partition, offset, None, key)
    for offset, value in enumerate(valid):
        clean.handle(value, *_args(value, offset))
    assert dirty.sellers_json() == clean.sellers_json()
    assert dirty.engine.report() == clean.engine.report()
    # One dead letter per bad element (an empty array has none: it carries nothing).
    assert sum(dirty.metrics.invalid.counts.values()) - sum(
        clean.metrics.invalid.counts.values()) == sum(elements(v) for v, _, _ in bad)


def _args(value: bytes, offset: int) -> tuple[str, int, int, None, bytes]:
    topic, key, partition = routed(value)
    return topic, partition, offset, None, key


@settings(max_examples=100, deadline=None)
@given(batch=mixed_batches(uniform=True))
def test_a_uniform_bulk_array_applies_exactly_its_valid_elements(
        batch: tuple[bytes, list[int]]) -> None:
    value, valid = batch
    items = [bytes(b) for b in split_batch(value) or []]
    first_valid = next((items[i] for i in valid), None)
    if first_valid is None:
        return  # nothing valid to route by: covered by the outcome property
    topic, key, partition = routed(first_valid)
    p = new_pipeline()
    dead = p.handle(value, topic, partition, 0, None, key)
    alone = new_pipeline()
    # A valid element can still be refused by the engine (a second, different
    # order for one order id): alone or in the array alike.
    refused_alone = sum(len(alone.handle(items[i], topic, partition, i, None, key))
                        for i in valid)
    assert p.engine.report() == alone.engine.report()
    assert len(dead) == len(items) - len(valid) + refused_alone


def test_the_decoder_is_the_pipelines_judge() -> None:
    """A sanity anchor for the properties above: a routed valid event is applied,
    the same bytes on the wrong partition are dead-lettered with the reason."""
    raw = orjson.dumps({"event_id": "e", "type": "order", "seller_id": "S1",
                        "order_id": "o", "occurred_at": "2024-06-14T00:00:00Z",
                        "ship_by": "2024-06-15T00:00:00Z"})
    decode_event(raw)
    topic, key, partition = routed(raw)
    p = new_pipeline()
    assert p.handle(raw, topic, partition, 0, None, key) == []
    wrong = (partition + 1) % 4
    [(bad, reason)] = new_pipeline().handle(raw, topic, wrong, 0, None, key)
    assert bad == raw
    assert f"belongs on partition {partition} of 4" in reason
