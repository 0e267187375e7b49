"""The metric catalog: one entry per metric, configurable in one TOML file.

A metric is "orders satisfying predicate N" over "orders satisfying predicate D",
both counted over orders purchased in the last ``window_days`` UTC days, compared
with a target. Adding a metric is one entry here (or in the TOML file) naming two
predicates from :data:`streams.engine.rules.PREDICATES`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from streams.engine.rules import NUMERATORS_OF, PREDICATES
from streams.errors import ConfigError

Healthy: TypeAlias = Literal["at_least", "below"]
"""``at_least``: healthy when value >= target; ``below``: healthy when value < target."""
HEALTHY_VALUES: Final[tuple[Healthy, ...]] = ("at_least", "below")

Status: TypeAlias = Literal["healthy", "warning", "breach", "insufficient_volume"]
"""A seller's standing on one metric, volume considered (see :meth:`Metric.status`)."""
STATUSES: Final[tuple[Status, ...]] = ("healthy", "warning", "breach", "insufficient_volume")

# Floors (issue #10). A rate over a handful of orders is noise: Zalando evaluates
# sellers from 30 orders, and eBay tolerates up to 2 cases before a rate counts
# against a seller. With both, one bad order never breaches a 1 % metric (it needs
# 3 bad orders, and then 3 in 100 does), and a new seller is "insufficient_volume",
# not "healthy", until 30 orders are in the window.
DEFAULT_MIN_ORDERS: Final = 30
DEFAULT_MIN_COUNT: Final = 3


def exact(x: float) -> Fraction:
    """A target as the decimal it is written as (0.97 is 97/100, not the nearest
    double): ``repr`` gives the shortest decimal that reads back as ``x``."""
    return Fraction(repr(float(x)))


@dataclass(frozen=True)
class Metric:
    name: str
    window_days: int
    numerator: str
    denominator: str
    target: float
    healthy: Healthy
    description: str = ""
    min_orders: int = DEFAULT_MIN_ORDERS
    min_count: int = DEFAULT_MIN_COUNT
    # The early-warning line, on the healthy side of the target; None: 80 % of a
    # ``below`` target, or the target plus 20 % of the headroom for ``at_least``.
    warning: float | None = None
    # Windows may lag (Amazon's on-time delivery: 14 purchase days ending 7 days
    # before today): the window covers purchase days today-lag-window+1 .. today-lag.
    lag_days: int = 0
    # For a response metric (denominator ``response_due``): a buyer message is due
    # this many hours after it was sent.
    response_hours: int = 48
    _target: tuple[int, int] = field(init=False, repr=False, compare=False)
    _warning: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"metric {self.name!r}"
        if not self.name.isidentifier():
            raise ConfigError(f"{where}: name must be snake_case, got {self.name!r}")
        if not 1 <= self.window_days <= 3660:
            raise ConfigError(
                f"{where}: window_days must be 1..3660, got {self.window_days!r}"
            )
        for bound, (least, most) in (("lag_days", (0, 3660)), ("response_hours", (1, 8760))):
            given = getattr(self, bound)
            if not isinstance(given, int) or isinstance(given, bool) or not (
                    least <= given <= most):
                raise ConfigError(f"{where}: {bound} must be an integer {least}..{most}, "
                                  f"got {given!r}")
        for role in ("numerator", "denominator"):
            pred = getattr(self, role)
            if pred not in PREDICATES:
                raise ConfigError(
                    f"{where}: {role} must be one of {sorted(PREDICATES)}, got {pred!r}"
                )
        if self.denominator not in NUMERATORS_OF:
            raise ConfigError(
                f"{where}: denominator must be one of {sorted(NUMERATORS_OF)}, "
                f"got {self.denominator!r}"
            )
        if self.numerator not in NUMERATORS_OF[self.denominator]:
            raise ConfigError(
                f"{where}: numerator {self.numerator!r} does not imply denominator "
                f"{self.denominator!r}; allowed: {sorted(NUMERATORS_OF[self.denominator])}"
            )
        if self.healthy not in HEALTHY_VALUES:
            raise ConfigError(
                f"{where}: healthy must be one of {HEALTHY_VALUES}, got {self.healthy!r}"
            )
        if not 0.0 <= self.target <= 1.0:
            raise ConfigError(f"{where}: target must be in 0..1, got {self.target!r}")
        for floor in ("min_orders", "min_count"):
            value = getattr(self, floor)
            if not isinstance(value, int) or isinstance(value, bool) or not (
                    0 <= value <= 1_000_000_000):
                raise ConfigError(f"{where}: {floor} must be an integer 0..1e9, got {value!r}")
        if self.warning is not None:
            low, high = (self.target, 1.0) if self.healthy == "at_least" else (0.0, self.target)
            if not low <= self.warning <= high:
                raise ConfigError(
                    f"{where}: warning must be on the healthy side of the target "
                    f"({low:g}..{high:g}), got {self.warning!r}")
        target = exact(self.target)
        warning = (exact(self.warning) if self.warning is not None
                   else target * Fraction(4, 5) if self.healthy == "below"
                   else target + (1 - target) / 5)
        # Exact integer comparisons, precomputed: n/d vs p/q is n*q vs p*d.
        object.__setattr__(self, "_target", (target.numerator, target.denominator))
        object.__setattr__(self, "_warning", (warning.numerator, warning.denominator))

    @property
    def window(self) -> tuple[int, int]:
        """``(window_days, lag_days)``: which purchase days (or, for a response
        metric, message days) the metric counts."""
        return self.window_days, self.lag_days

    @property
    def exact_target(self) -> Fraction:
        return Fraction(*self._target)

    @property
    def exact_warning(self) -> Fraction:
        return Fraction(*self._warning)

    def is_breached(self, value: float) -> bool:
        """Float comparison, for callers holding only a value; prefer :meth:`breached`."""
        if self.healthy == "at_least":
            return value < self.target
        return value >= self.target

    def breached(self, numerator: int, denominator: int) -> bool | None:
        """The exact threshold comparison (None without orders): a ``below`` metric
        exactly at its target is breached, an ``at_least`` one is not."""
        if denominator <= 0:
            return None
        p, q = self._target
        if self.healthy == "at_least":
            return numerator * q < p * denominator
        return numerator * q >= p * denominator

    def status(self, numerator: int, denominator: int) -> Status:
        """``insufficient_volume`` under ``min_orders``; ``breach`` when breached with
        at least ``min_count`` bad orders; ``warning`` past the warning line (or
        breached with fewer bad orders); else ``healthy``."""
        if denominator < self.min_orders or denominator <= 0:
            return "insufficient_volume"
        p, q = self._target
        w, v = self._warning
        if self.healthy == "at_least":
            bad = denominator - numerator
            if numerator * q < p * denominator and bad >= self.min_count:
                return "breach"
            return "warning" if numerator * v < w * denominator else "healthy"
        if numerator * q >= p * denominator and numerator >= self.min_count:
            return "breach"
        return "warning" if numerator * v >= w * denominator else "healthy"


DEFAULT_CATALOG: Final[tuple[Metric, ...]] = (
    Metric(
        "perfect_order_percentage", 90, "perfect", "order", 0.97, "at_least",
        "Orders with no defect, seller cancellation, late shipment, refund or "
        "buyer message, over all orders (seed 000).", warning=0.976,
    ),
    Metric(
        "order_defect_rate", 60, "defect", "order", 0.01, "below",
        "Orders with negative feedback, an A-to-z claim or a chargeback (Amazon ODR).",
        warning=0.008,
    ),
    Metric(
        "pre_fulfillment_cancel_rate", 7, "pre_fulfillment_cancellation", "order",
        0.025, "below", "Orders the seller cancelled before shipping them (seed 004).",
        warning=0.02,
    ),
    Metric(
        "late_shipment_rate", 10, "late_shipment", "order", 0.04, "below",
        "Orders confirmed after ship_by, or not confirmed once it passed (seed 004).",
        warning=0.032,
    ),
    Metric(
        "refund_rate", 60, "refunded", "order", 0.01, "below",
        "Orders refunded by the seller: seed 004's 'order defect rate'.", warning=0.008,
    ),
    Metric(
        "valid_tracking_rate", 30, "valid_tracking", "shipped", 0.95, "at_least",
        "Shipped orders with a non-empty tracking id, over shipped orders.", warning=0.96,
    ),
)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The metrics in force, plus the derived facts the engine needs from them."""

    metrics: tuple[Metric, ...]

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ConfigError("the metric catalog is empty")
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"metric names must be unique, repeated: {dupes}")
        hours = {m.response_hours for m in self.metrics if m.denominator == "response_due"}
        if len(hours) > 1:
            raise ConfigError(f"response metrics must share one response_hours, got "
                              f"{sorted(hours)}")

    @property
    def windows(self) -> tuple[tuple[int, int], ...]:
        """Distinct ``(window_days, lag_days)``: one running sum per seller each.
        The last is always ``(horizon_days, 0)``, every day the state holds (added
        when no metric uses it): a seller is tracked while it counts there."""
        horizon = (self.horizon_days, 0)
        return (*sorted({m.window for m in self.metrics} - {horizon}), horizon)

    @property
    def horizon_days(self) -> int:
        """Orders older than this many days count nowhere and are dropped."""
        return max(m.window_days + m.lag_days for m in self.metrics)

    @property
    def response_hours(self) -> int | None:
        """Hours a buyer message has for its response (None: no response metric)."""
        hours = {m.response_hours for m in self.metrics if m.denominator == "response_due"}
        return hours.pop() if hours else None

    def by_name(self, name: str) -> Metric:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)


# --- profiles: marketplaces' standards (issue #12), ``--catalog NAME`` ------------

AMAZON: Final[tuple[Metric, ...]] = (
    *DEFAULT_CATALOG,
    # Amazon shows late shipment over 10 and 30 days (Seller Central, "Account
    # Health": Late Shipment Rate).
    Metric(
        "late_shipment_rate_30d", 30, "late_shipment", "order", 0.04, "below",
        "Late shipment rate over 30 days (Amazon shows 10 and 30).", warning=0.032,
    ),
    # On-Time Delivery Rate, a requirement since 2024-09-25: >= 90 % of tracked
    # orders delivered by the promised date, over 14 days with a 7-day delay
    # (Seller Central, "On-Time Delivery Rate" policy update, 2024).
    Metric(
        "on_time_delivery_rate", 14, "on_time_delivery", "delivery_due", 0.90, "at_least",
        "Tracked, uncancelled orders delivered by deliver_by, over those delivered or "
        "past it; purchase days today-20 .. today-7.", lag_days=7,
    ),
)

# Walmart Marketplace, Seller Performance Standards (Seller Center help, 2024-2026).
WALMART: Final[tuple[Metric, ...]] = (
    Metric("seller_cancel_rate", 30, "seller_cancellation", "order", 0.02, "below",
           "Orders the seller cancelled (before or after shipping)."),
    Metric("on_time_delivery_rate", 30, "on_time_delivery", "delivery_due", 0.90,
           "at_least", "Tracked, uncancelled orders delivered by deliver_by (no lag)."),
    Metric("valid_tracking_rate", 30, "valid_tracking", "shipped", 0.99, "at_least",
           "Shipped orders with a valid tracking id."),
    Metric("refund_rate", 30, "refunded", "order", 0.06, "below", "Orders refunded."),
    Metric("seller_response_rate", 30, "responded_on_time", "response_due", 0.95,
           "at_least", "Buyer inquiries answered within 48 h, by the inquiry's day.",
           response_hours=48),
    Metric("negative_feedback_rate", 60, "negative_feedback", "order", 0.02, "below",
           "Orders with negative feedback."),
    Metric("return_rate", 60, "returned", "order", 0.06, "below", "Orders returned."),
    Metric("item_not_received_rate", 60, "item_not_received", "order", 0.02, "below",
           "Orders with an open or granted item-not-received claim."),
)

# eBay seller standards (eBay help, "Seller performance standards"): defects, cases
# closed without seller resolution (at most 0.3 % and at most 2 cases), late
# shipments (at most 7 % and at most 7 late: breach from 8). eBay evaluates 3
# months, or 12 for sellers under 400 transactions: popstream has one window per
# metric, 90 days here, and does not switch to 12 months for small sellers.
EBAY: Final[tuple[Metric, ...]] = (
    Metric("transaction_defect_rate", 90, "transaction_defect", "order", 0.02, "below",
           "Orders with a seller cancellation or a claim granted to the buyer."),
    Metric("cases_closed_without_resolution_rate", 90, "claim_granted", "order", 0.003,
           "below", "Orders whose claim was granted to the buyer (closed without seller "
           "resolution).", min_count=3),
    Metric("late_shipment_rate", 90, "late_shipment", "order", 0.07, "below",
           "Orders shipped after ship_by, or unshipped past it.", min_count=8),
)

PROFILES: Final[dict[str, tuple[Metric, ...]]] = {
    "amazon": AMAZON, "walmart": WALMART, "ebay": EBAY,
}
"""Shipped catalogs by name (``--catalog``, ``POPSTREAM_CATALOG``)."""


DEFAULT_PROFILE: Final = "amazon"


def default_catalog() -> Catalog:
    """The default profile, ``amazon``: the six v1 metrics (seeds 000 and 004),
    late shipment over 30 days too, and on-time delivery."""
    return Catalog(PROFILES[DEFAULT_PROFILE])


def resolve_catalog(spec: str | Path | None) -> Catalog:
    """``--catalog`` / ``POPSTREAM_CATALOG``: a profile name (``amazon``,
    ``walmart``, ``ebay``), a TOML file, or nothing for the default profile."""
    if spec is None or spec == "":
        return default_catalog()
    if isinstance(spec, str) and spec in PROFILES:
        return profile_catalog(spec)
    path = Path(spec)
    if not path.exists() and isinstance(spec, str) and "/" not in spec and "." not in spec:
        raise ConfigError(f"unknown catalog {spec!r}: neither a profile {sorted(PROFILES)} "
                          "nor a file")
    return load_catalog(path)


def profile_catalog(name: str) -> Catalog:
    """A shipped profile by name; ``ConfigError`` naming the profiles otherwise."""
    try:
        return Catalog(PROFILES[name])
    except KeyError:
        raise ConfigError(f"unknown catalog profile {name!r}; profiles: "
                          f"{sorted(PROFILES)} (or a path to a TOML file)") from None


def load_catalog(path: Path) -> Catalog:
    """Read a catalog TOML file.

    Format: one table per metric, e.g. ``[metrics.late_shipment_rate]`` with
    ``window_days``, ``target`` and, for new metrics, ``numerator``,
    ``denominator`` and ``healthy``. Entries naming a metric of the base profile
    (top-level ``profile = "walmart"``; default ``amazon``) override only the keys
    they give; the profile's other metrics stay unless ``replace_defaults = true``.
    """
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read metric catalog {path}: {exc}") from None
    return catalog_from_mapping(doc, source=str(path))


def catalog_from_mapping(doc: Mapping[str, Any], source: str = "catalog") -> Catalog:
    tables = doc.get("metrics", {})
    if not isinstance(tables, Mapping):
        raise ConfigError(f"{source}: [metrics] must be a table")
    profile = doc.get("profile", DEFAULT_PROFILE)
    if profile not in PROFILES:
        raise ConfigError(f"{source}: profile must be one of {sorted(PROFILES)}, "
                          f"got {profile!r}")
    defaults = {m.name: m for m in PROFILES[profile]}
    replace = bool(doc.get("replace_defaults", False))
    result: dict[str, Metric] = {} if replace else dict(defaults)
    allowed = {"window_days", "target", "numerator", "denominator", "healthy",
               "description", "min_orders", "min_count", "warning", "lag_days",
               "response_hours"}
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: metrics.{name} must be a table")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise ConfigError(
                f"{source}: metrics.{name}: unknown keys {unknown}; "
                f"allowed: {sorted(allowed)}"
            )
        base = defaults.get(name)
        fields: dict[str, Any] = (
            {
                "window_days": base.window_days,
                "numerator": base.numerator,
                "denominator": base.denominator,
                "target": base.target,
                "healthy": base.healthy,
                "description": base.description,
                "min_orders": base.min_orders,
                "min_count": base.min_count,
                "lag_days": base.lag_days,
                "response_hours": base.response_hours,
                # A new target without a new warning: the warning follows it.
                "warning": base.warning if "target" not in table else None,
            }
            if base
            else {"description": ""}
        )
        fields.update(table)
        missing = sorted(
            {"window_days", "numerator", "denominator", "target", "healthy"} - set(fields)
        )
        if missing:
            raise ConfigError(f"{source}: new metric {name!r} needs {missing}")
        if not isinstance(fields["window_days"], int) or isinstance(
            fields["window_days"], bool
        ):
            raise ConfigError(
                f"{source}: metrics.{name}.window_days must be an integer, "
                f"got {fields['window_days']!r}"
            )
        try:
            target = float(fields["target"])
        except (TypeError, ValueError):
            raise ConfigError(
                f"{source}: metrics.{name}.target must be a number, "
                f"got {fields['target']!r}"
            ) from None
        result[name] = Metric(
            name=name,
            window_days=fields["window_days"],
            numerator=str(fields["numerator"]),
            denominator=str(fields["denominator"]),
            target=target,
            healthy=fields["healthy"],
            description=str(fields["description"]),
            min_orders=fields.get("min_orders", DEFAULT_MIN_ORDERS),
            min_count=fields.get("min_count", DEFAULT_MIN_COUNT),
            warning=_number(fields.get("warning"), f"{source}: metrics.{name}.warning"),
            lag_days=fields.get("lag_days", 0),
            response_hours=fields.get("response_hours", 48),
        )
    return Catalog(tuple(result.values()))


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return float(value)


def metric_names(catalog: Catalog) -> Sequence[str]:
    return [m.name for m in catalog.metrics]
