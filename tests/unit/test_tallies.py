"""Tallies must expose exactly what prometheus_client's own metrics would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from streams.runtime.tallies import LatencyHistogram, Tally, TallyCollector

pytestmark = pytest.mark.unit
BOUNDS = (0.001, 0.005, 0.01, 0.1, 1.0, 2.5)


def _without_created(text: bytes) -> list[bytes]:
    return [line for line in text.splitlines() if b"_created" not in line]


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y"]),
                          st.integers(1, 5))),
       st.lists(st.one_of(st.sampled_from(BOUNDS), st.floats(0, 10))))
def test_exposition_equals_prometheus_clients(incs: list[tuple[str, str, int]],
                                              observations: list[float]) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("c", "Doc.", ["k", "v"], registry=theirs)
    histogram = Histogram("h_seconds", "Doc.", buckets=BOUNDS, registry=theirs)
    tally = Tally("c", "Doc.", ["k", "v"])
    latency = LatencyHistogram("h_seconds", "Doc.", BOUNDS)
    TallyCollector(tally, latency).register(ours)
    for k, v, n in incs:
        counter.labels(k, v).inc(n)
        tally.add(k, v, n=n)
    for value in observations:
        histogram.observe(value)
        latency.observe(value)
    assert _without_created(generate_latest(ours)) == _without_created(generate_latest(theirs))


def test_keys_can_be_mapped_to_labels_at_scrape_time() -> None:
    tally = Tally("t", "Doc.", ["kind"], labels_of=lambda key: (key.__name__,))
    tally.counts[int] = 2
    tally.counts[str] = 1
    assert tally.by_labels() == {("int",): 2, ("str",): 1}
    assert tally.total() == 3
    with pytest.raises(ValueError, match="takes labels"):
        tally.add("int")


def test_wrong_label_count_and_unsorted_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        Tally("t", "Doc.", ["a", "b"]).add("x")
    with pytest.raises(ValueError, match="increasing"):
        LatencyHistogram("h", "Doc.", (1.0, 0.5))
