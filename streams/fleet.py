"""What a worker exports at fleet size (issues #10 and #11): fleet series for every
seller, per-seller series only for the sellers that matter.

Prometheus' own guidance is to keep labels off unbounded sets; ~19 series per
seller for a million sellers is 19 million series and a 1.6 GB scrape. So:

* **fleet series** cover every seller this worker owns — per metric, sellers by
  status (``popstream_fleet_sellers{metric,status}``, zeros included), a histogram
  of sellers' values with buckets around the target (sellers with enough volume),
  and the fleet's numerator and denominator sums;
* **per-seller series** (value, numerator, denominator, status, causes) only for
  *exported* sellers: in the default ``alerting`` mode every seller with a metric
  in ``warning`` or ``breach`` — so no seller that could fire an alert is ever
  left out — plus a watch list; in ``all`` mode every tracked seller (today's
  behaviour, for small fleets).

Why ``alerting`` is the default: per-seller series exist for alerting and for a
look at a seller in trouble; a healthy seller's numbers are in the API. In a fleet
where a few per cent of sellers are in warning or breach, that cuts the series by
~20-50x without hiding anything an alert rule or dashboard needs.

Cost is in proportion to what changed: the engine reports the sellers whose sums
moved since the last refresh, with their sums before (:meth:`Engine.take_touched`),
and the aggregates move by the difference. A scrape is then a join of cached text:
its cost depends on the exported sellers, not on all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal

import orjson

from streams.engine.catalog import STATUSES, Metric, Status, exact
from streams.engine.engine import Engine
from streams.engine.explain import headroom
from streams.engine.rules import CAUSE_NAMES, PREDICATES
from streams.engine.windows import LANE_BITS, LANE_MASK

ExportMode = Literal["alerting", "all"]
EXPORT_MODES: Final[tuple[ExportMode, ...]] = ("alerting", "all")
P: Final = "popstream_"
_ALERTING: Final = frozenset({"warning", "breach"})
_STATUS_INDEX: Final = {s: i for i, s in enumerate(STATUSES)}

# Multiples of the target (``below``) or of the headroom 1 - target
# (``at_least``) at which the value histogram has a bucket bound.
_BELOW_STEPS: Final = (Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), Fraction(1),
                       Fraction(5, 4), Fraction(3, 2), Fraction(2), Fraction(3),
                       Fraction(5), Fraction(10), Fraction(25))
_HEADROOM_STEPS: Final = (Fraction(25), Fraction(10), Fraction(5), Fraction(3),
                          Fraction(2), Fraction(3, 2), Fraction(5, 4), Fraction(1),
                          Fraction(1, 2), Fraction(1, 4), Fraction(0))


def value_buckets(metric: Metric) -> tuple[Fraction, ...]:
    """Upper bounds of the value histogram: dense around the target and the
    warning line, so a dashboard sees sellers approach the line."""
    target = exact(metric.target)
    if metric.healthy == "below":
        bounds = {target * k for k in _BELOW_STEPS}
    else:
        bounds = {1 - (1 - target) * k for k in _HEADROOM_STEPS}
    bounds |= {metric.exact_warning, target, Fraction(1)}
    return tuple(sorted(b for b in bounds if 0 <= b <= 1))


def _fmt(x: Fraction) -> str:
    return repr(float(x))


@dataclass(frozen=True, slots=True)
class Transition:
    """One seller's status on one metric changed (published on ``popstream-status``)."""

    seller_id: str
    metric: str
    was: Status
    status: Status
    numerator: int
    denominator: int
    as_of: int  # us

    def to_json(self) -> bytes:
        from streams.engine.events import format_us

        return orjson.dumps({
            "type": "status", "seller_id": self.seller_id, "metric": self.metric,
            "from": self.was, "to": self.status, "numerator": self.numerator,
            "denominator": self.denominator,
            "value": self.numerator / self.denominator if self.denominator else None,
            "as_of": format_us(self.as_of),
        })


class _MetricPlan:
    __slots__ = ("bounds", "den_shift", "metric", "name", "num_shift", "window")

    def __init__(self, metric: Metric, window: int, num_bit: int, den_bit: int) -> None:
        self.metric = metric
        self.name = metric.name
        self.window = window
        self.num_shift = LANE_BITS * (num_bit.bit_length() - 1)
        self.den_shift = LANE_BITS * (den_bit.bit_length() - 1)
        self.bounds = [(b.numerator, b.denominator) for b in value_buckets(metric)]


class FleetExporter:
    """Fleet aggregates and per-seller text, kept up to date from the engine."""

    def __init__(self, engine: Engine, mode: ExportMode = "alerting",
                 watchlist: Iterable[str] = (), transitions: bool = False) -> None:
        if engine.touched is None:
            raise ValueError("the engine must be built with track_touched=True")
        self.engine = engine
        self.mode = mode
        self.watchlist = frozenset(watchlist)
        windows = engine.catalog.windows
        self.plans = [_MetricPlan(m, wi, num, den)
                      for (_, wi, num, den), m in zip(engine.metric_plan(),
                                                      engine.catalog.metrics, strict=True)]
        self.cause_window = engine.cause_window()
        self.cause_shifts = [(c, LANE_BITS * (PREDICATES[c].bit_length() - 1))
                             for c in CAUSE_NAMES]
        n = len(self.plans)
        self.status_counts = [[0] * len(STATUSES) for _ in range(n)]
        self.bucket_counts = [[0] * (len(p.bounds) + 1) for p in self.plans]
        self.value_sums = [Fraction(0) for _ in range(n)]
        self.numerators = [0] * n
        self.denominators = [0] * n
        self.tracked = 0
        # seller -> its five text chunks (value, numerator, denominator, status, causes)
        self.exported: dict[str, tuple[str, str, str, str, str, str]] = {}
        # Status changes since the last take_transitions() (when asked for): how a
        # marketplace tells a million sellers without Alertmanager.
        self.transitions: list[Transition] | None = [] if transitions else None
        self._backlog: dict[str, list[int]] = {}
        self.version = 0  # moves when a seller starts or stops being tracked
        del windows
        self._seed()

    def _seed(self) -> None:
        """Count the sellers the engine already holds (built after a restore)."""
        zeros = [0] * len(self.engine.catalog.windows)
        for seller_id, seller in self.engine.sellers.items():
            self._move(seller_id, zeros, seller.sums, emit=False)
        self.engine.take_touched()

    def refresh(self, emit: bool = True, limit: int | None = None) -> int:
        """Apply what moved since the last refresh, at most ``limit`` sellers of it
        (the rest waits in a backlog: a midnight roll touches every seller, and the
        worker catches up in slices between messages and scrapes). Returns how many
        sellers are still waiting. ``emit=False``: no transitions (a restore brings
        back known statuses)."""
        backlog = self._backlog
        for seller_id, before in self.engine.take_touched().items():
            backlog.setdefault(seller_id, before)  # the earliest "before" counts
        sellers = self.engine.sellers
        count = len(backlog) if limit is None else min(limit, len(backlog))
        for _ in range(count):
            seller_id, before = backlog.popitem()
            seller = sellers.get(seller_id)
            self._move(seller_id, before, seller.sums if seller is not None else None, emit)
        return len(backlog)

    def take_transitions(self) -> list[Transition]:
        out = self.transitions or []
        if self.transitions is not None:
            self.transitions = []
        return out

    def _move(self, seller_id: str, before: list[int], after: list[int] | None,
              emit: bool = True) -> None:
        mask = LANE_MASK
        old: list[Status] = []
        if bool(before[-1]) != bool(after is not None and after[-1]):
            self.version += 1
        if before[-1]:
            self.tracked -= 1
            for i, plan in enumerate(self.plans):
                vector = before[plan.window]
                num = (vector >> plan.num_shift) & mask
                den = (vector >> plan.den_shift) & mask
                old.append(self._count(i, plan, num, den, -1))
        if after is None or not after[-1]:
            self.exported.pop(seller_id, None)
            after = None
        else:
            self.tracked += 1
        statuses: list[Status] = []
        values: list[tuple[int, int]] = []
        for i, plan in enumerate(self.plans):
            if after is None:
                statuses.append("insufficient_volume")
                values.append((0, 0))
                continue
            vector = after[plan.window]
            num = (vector >> plan.num_shift) & mask
            den = (vector >> plan.den_shift) & mask
            statuses.append(self._count(i, plan, num, den, +1))
            values.append((num, den))
        transitions = self.transitions
        if transitions is not None and emit:
            for i, plan in enumerate(self.plans):
                was = old[i] if old else "insufficient_volume"
                if was != statuses[i]:
                    num, den = values[i]
                    transitions.append(Transition(seller_id, plan.name, was, statuses[i],
                                                  num, den, self.engine.now))
        if after is None:
            return
        if self.mode == "all" or seller_id in self.watchlist:
            self.exported[seller_id] = self._text(seller_id, statuses, values,
                                                  after[self.cause_window], True)
        elif not _ALERTING.isdisjoint(statuses):
            self.exported[seller_id] = self._text(seller_id, statuses, values,
                                                  after[self.cause_window], False)
        else:
            self.exported.pop(seller_id, None)

    def _count(self, i: int, plan: _MetricPlan, num: int, den: int, sign: int) -> Status:
        status = plan.metric.status(num, den)
        self.status_counts[i][_STATUS_INDEX[status]] += sign
        self.numerators[i] += sign * num
        self.denominators[i] += sign * den
        if status != "insufficient_volume":
            bucket = len(plan.bounds)
            for b, (p, q) in enumerate(plan.bounds):
                if num * q <= p * den:
                    bucket = b
                    break
            self.bucket_counts[i][bucket] += sign
            self.value_sums[i] += sign * Fraction(num, den)
        return status

    def _text(self, seller_id: str, statuses: list[Status], values: list[tuple[int, int]],
              causes_vector: int, every_metric: bool
              ) -> tuple[str, str, str, str, str, str]:
        """The seller's series: of every metric (``all`` mode, the watch list), or
        of the metrics in ``warning`` or ``breach`` only — what an alert and its
        dashboard row need. A seller alerting on one metric has ~5 series, not
        ~25: at a million sellers that is the scrape's size (issue #11)."""
        r: list[str] = []
        n: list[str] = []
        d: list[str] = []
        s: list[str] = []
        h: list[str] = []
        for plan, status, (num, den) in zip(self.plans, statuses, values, strict=True):
            if not every_metric and status not in _ALERTING:
                continue
            labels = f'{{seller_id="{seller_id}",metric="{plan.name}"'
            if den:
                r.append(f"{P}seller_metric_ratio{labels}}} {num / den!r}\n")
                n.append(f"{P}seller_metric_numerator_orders{labels}}} {num}\n")
                d.append(f"{P}seller_metric_denominator_orders{labels}}} {den}\n")
            s.append(f'{P}seller_metric_status{labels},status="{status}"}} 1\n')
            room = headroom(plan.metric, num, den)
            if room is not None:
                h.append(f"{P}seller_metric_headroom_orders{labels}}} {room}\n")
        c: list[str] = []
        if causes_vector:
            for cause, shift in self.cause_shifts:
                count = (causes_vector >> shift) & LANE_MASK
                if count:
                    c.append(f'{P}seller_imperfect_orders{{seller_id="{seller_id}",'
                             f'cause="{cause}"}} {count}\n')
        return "".join(r), "".join(n), "".join(d), "".join(s), "".join(c), "".join(h)

    # --- rendering ----------------------------------------------------------------

    def render(self, trailer: str = "") -> bytes:
        """The exposition text: per-seller families, fleet, catalog, then ``trailer``
        (everything caught up first: for tests and tools; the worker uses
        :meth:`render_parts`)."""
        self.refresh()
        return "".join([*self.render_parts(), trailer]).encode()

    def render_parts(self, slice_size: int = 5000) -> Iterator[str]:
        """The text in parts of ``slice_size`` sellers, from a snapshot of the
        exported sellers taken first: a caller on an event loop yields between
        parts, so a large scrape never blocks the loop for long."""
        chunks = list(self.exported.values())
        for k, (family, kind, help_text) in enumerate(_SELLER_FAMILIES):
            yield f"# HELP {P}{family} {help_text}\n# TYPE {P}{family} {kind}\n"
            for start in range(0, len(chunks), slice_size):
                yield "".join([chunk[k] for chunk in chunks[start:start + slice_size]])
        yield "".join(self.fleet_lines())

    def fleet_lines(self) -> list[str]:
        out: list[str] = []
        add = out.append
        add(f"# HELP {P}fleet_sellers Sellers owned by this worker, by status per metric.\n"
            f"# TYPE {P}fleet_sellers gauge\n")
        for plan, counts in zip(self.plans, self.status_counts, strict=True):
            for status, count in zip(STATUSES, counts, strict=True):
                add(f'{P}fleet_sellers{{metric="{plan.name}",status="{status}"}} {count}\n')
        add(f"# HELP {P}fleet_metric_value Sellers' values (sellers with enough volume).\n"
            f"# TYPE {P}fleet_metric_value histogram\n")
        for i, plan in enumerate(self.plans):
            cumulative = 0
            for (p, q), count in zip(plan.bounds, self.bucket_counts[i], strict=False):
                cumulative += count
                add(f'{P}fleet_metric_value_bucket{{metric="{plan.name}",'
                    f'le="{_fmt(Fraction(p, q))}"}} {cumulative}\n')
            cumulative += self.bucket_counts[i][-1]
            add(f'{P}fleet_metric_value_bucket{{metric="{plan.name}",le="+Inf"}} '
                f"{cumulative}\n")
            add(f'{P}fleet_metric_value_sum{{metric="{plan.name}"}} '
                f"{float(self.value_sums[i])!r}\n")
            add(f'{P}fleet_metric_value_count{{metric="{plan.name}"}} {cumulative}\n')
        for family, values, help_text in (
            ("fleet_numerator_orders", self.numerators, "Sum of sellers' numerators."),
            ("fleet_denominator_orders", self.denominators, "Sum of sellers' denominators."),
        ):
            add(f"# HELP {P}{family} {help_text}\n# TYPE {P}{family} gauge\n")
            for plan, value in zip(self.plans, values, strict=True):
                add(f'{P}{family}{{metric="{plan.name}"}} {value}\n')
        add(f"# HELP {P}sellers_tracked Sellers with an order in a window.\n"
            f"# TYPE {P}sellers_tracked gauge\n{P}sellers_tracked {self.tracked}\n")
        add(f"# HELP {P}sellers_unexported Tracked sellers without per-seller series "
            f"(POPSTREAM_EXPORT={self.mode}).\n# TYPE {P}sellers_unexported gauge\n"
            f"{P}sellers_unexported {self.tracked - len(self.exported)}\n")
        for family, help_text, value_of in _CATALOG_FAMILIES:
            add(f"# HELP {P}{family} {help_text}\n# TYPE {P}{family} gauge\n")
            for plan in self.plans:
                m = plan.metric
                labels = (f'metric="{m.name}",healthy="{m.healthy}"'
                          if family == "metric_target_ratio" else f'metric="{m.name}"')
                add(f"{P}{family}{{{labels}}} {value_of(m)}\n")
        return out


_SELLER_FAMILIES: Final = (
    ("seller_metric_ratio", "gauge",
     "Seller metric value over its window (numerator / denominator)."),
    ("seller_metric_numerator_orders", "gauge", "Orders counted in the metric's numerator."),
    ("seller_metric_denominator_orders", "gauge",
     "Orders counted in the metric's denominator."),
    ("seller_metric_status", "gauge",
     "1 for the seller's current status on the metric (label status)."),
    ("seller_imperfect_orders", "gauge",
     "Orders in the Perfect Order window made imperfect by each cause."),
    ("seller_metric_headroom_orders", "gauge",
     "More orders that could turn bad today without a breach (absent when breached)."),
)
_CATALOG_FAMILIES: Final[tuple[tuple[str, str, Callable[[Metric], str]], ...]] = (
    ("metric_target_ratio", "Target of each metric; see label healthy.",
     lambda m: repr(float(m.target))),
    ("metric_warning_ratio", "Early-warning line of each metric.",
     lambda m: repr(float(m.exact_warning))),
    ("metric_min_orders", "Orders a seller needs in the window for a status.",
     lambda m: f"{m.min_orders}"),
    ("metric_min_count", "Bad orders a breach needs.", lambda m: f"{m.min_count}"),
    ("metric_window_days", "Window of each metric, in UTC days.",
     lambda m: f"{m.window_days}.0"),
)
