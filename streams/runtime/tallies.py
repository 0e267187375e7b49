"""Counters and a histogram whose hot path is a dict or list increment.

Why not ``prometheus_client.Counter`` directly: ``counter.labels(a, b).inc()``
costs ~2.5 us (label validation, a dict lookup under a lock, then a locked add),
and the worker did three such calls per event. A profile of the pipeline
(issue #5) put 34 % of its time there, more than the engine's own ``apply``.
Here the worker adds to plain ints and a collector turns them into the same
Prometheus families at scrape time, so the exposition is unchanged
(``popstream_events_processed_total{type,outcome}`` and so on).

Not thread-safe, on purpose: the worker increments and the scrape reads them on
the same asyncio loop; nothing else touches them.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry


class Tally:
    """A labelled counter: ``counts[key] -> n``. Increment it with
    ``t.counts[key] = t.counts.get(key, 0) + n`` on hot paths, or :meth:`add`.

    A key is the tuple of label values, unless ``labels_of`` is given: then keys
    are whatever is cheapest to have at hand (say ``(type(event), outcome)``) and
    ``labels_of(key)`` turns them into label values at scrape time.
    """

    __slots__ = ("counts", "created", "documentation", "labelnames", "labels_of", "name")

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 labels_of: Callable[[Any], tuple[str, ...]] | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.counts: dict[Any, int] = {}
        self.created = time.time()
        self.labels_of = labels_of

    def add(self, *labels: str, n: int = 1) -> None:
        """Count under label values (only for tallies keyed by them)."""
        if self.labels_of is not None or len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labels}")
        self.counts[labels] = self.counts.get(labels, 0) + n

    def total(self) -> int:
        return sum(self.counts.values())

    def by_labels(self) -> dict[tuple[str, ...], int]:
        if self.labels_of is None:
            return dict(self.counts)
        out: dict[tuple[str, ...], int] = {}
        for key, n in self.counts.items():
            labels = self.labels_of(key)
            out[labels] = out.get(labels, 0) + n
        return out

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, n in self.by_labels().items():  # first-counted first, as theirs
            family.add_metric(list(labels), n, created=self.created)
        return family


class LatencyHistogram:
    """A histogram with Prometheus's ``le`` semantics (a value equal to a bound
    falls in that bound's bucket), observed by one ``bisect`` and a list add."""

    __slots__ = ("bounds", "counts", "documentation", "name", "sum")

    def __init__(self, name: str, documentation: str, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"{name}: bucket bounds must be increasing, got {bounds}")
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self) -> Metric:
        cumulative, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            cumulative.append((_le(bound), running))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], cumulative, sum_value=self.sum)
        return family


def _le(bound: float) -> str:
    """Bucket labels as prometheus_client writes them (``0.5``, ``1.0``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(bound)


class TallyCollector(Collector):
    """Exposes tallies and histograms through a registry."""

    def __init__(self, *metrics: Tally | LatencyHistogram) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in self.metrics:
            yield metric.family()

    def register(self, registry: CollectorRegistry) -> TallyCollector:
        registry.register(self)
        return self
