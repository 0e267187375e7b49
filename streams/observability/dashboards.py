"""Grafana dashboards as code: Fleet health, Seller detail, Pipeline.

Plain JSON models (Grafana's own format, schemaVersion 39) built from the catalog,
so every metric gets its panels, its axis scaled around its target and its warning
and target drawn as thresholds. They must stay cheap at 100,000 sellers and more
(issue #10; ``make bench-dashboards`` measures every query on a backfilled
Prometheus), so the cost of every panel is a design decision:

* No range query touches per-seller series except for the one seller picked on
  Seller detail. Fleet panels read the fleet series each worker computes over all
  the sellers it owns (``popstream_fleet_sellers``, the ``popstream_fleet_metric_value``
  histogram, the fleet numerator and denominator sums): a few hundred series
  whatever the fleet size, and no recording rule is needed.
* Tables and bar gauges are instant queries (``"instant": true``). Each metric's
  worst sellers are ranked once, by a hidden ``query_result`` variable holding the
  ids of the ``topk(N, ...)`` at the end of the range over the sellers past the
  volume floor (status not ``insufficient_volume``); the table's columns (value
  coloured against warning and target, status, numerator, denominator) select
  those N sellers by id. Exactly N rows, and one query per metric that reads every
  exported seller instead of one per column: at 100,000 sellers exported, 1.3 s
  for the variable and 0.25 s for the table, against 7-12 s ranking per column.
* Counts that can be zero come from series that are always present (the fleet
  status counts include 0), or fall back to an explicit 0, so a metric with no
  breach shows 0 rather than no bar.
* The seller picker is a text box: a dropdown would load every seller id.
* Rates use ``$__rate_interval`` (the datasource's ``timeInterval`` is the scrape
  interval, 15 s, so the window always holds enough samples).

Queries read the workers' series directly, deduplicated with ``max by`` where a
rebalance can briefly leave a seller on two workers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from streams.engine.catalog import Catalog, Metric
from streams.engine.rules import CAUSE_NAMES

DATASOURCE: Final = {"type": "prometheus", "uid": "prometheus"}
WORST_N: Final = 20
"""Rows of every worst-sellers table."""
SELLER_UID: Final = "popstream-seller"

# Grafana colours for the four statuses, and the order a state timeline encodes
# them in (worse is higher).
STATUS_COLORS: Final = {"insufficient_volume": "#8e8e8e", "healthy": "green",
                        "warning": "orange", "breach": "red"}
STATUS_CODES: Final = {"insufficient_volume": 0, "healthy": 1, "warning": 2, "breach": 3}


@dataclass(frozen=True, slots=True)
class Query:
    """One Grafana target: ``instant`` for tables, stats and bar gauges (one value
    per series at the end of the range), else a range query at the panel's step."""

    expr: str
    legend: str = ""
    instant: bool = False

    def target(self, ref_id: str, table: bool) -> dict[str, Any]:
        return {"refId": ref_id, "expr": self.expr, "legendFormat": self.legend,
                "instant": self.instant, "range": not self.instant,
                "format": "table" if table else "time_series", "datasource": DATASOURCE}


class _Layout:
    """Hands out grid positions, 24 columns wide, row by row."""

    def __init__(self) -> None:
        self.x = self.y = self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def panel(self, kind: str, title: str, queries: list[Query], w: int, h: int,
              description: str = "", **extra: Any) -> dict[str, Any]:
        panel = {
            "id": self.next_id,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": self.place(w, h),
            "targets": [q.target(chr(ord("A") + i), kind == "table")
                        for i, q in enumerate(queries)],
            **extra,
        }
        self.next_id += 1
        return panel


# --- per-metric facts -------------------------------------------------------------


def _target(metric: Metric) -> float:
    """The float of the decimal the target is written as."""
    return float(metric.exact_target)


def _warning(metric: Metric) -> float:
    return float(metric.exact_warning)


def _pct(x: float) -> str:
    return f"{x * 100:.4g} %"


def _target_text(metric: Metric) -> str:
    op = ">=" if metric.healthy == "at_least" else "<"
    return f"healthy {op} {_pct(_target(metric))}, warning from {_pct(_warning(metric))}"


def _thresholds(metric: Metric) -> dict[str, Any]:
    """Red past the target, orange past the warning line, green otherwise, with the
    boundaries the status uses (a ``below`` value equal to its target breaches)."""
    target, warning = _target(metric), _warning(metric)
    if metric.healthy == "at_least":
        steps = [{"color": "red", "value": None}, {"color": "orange", "value": target},
                 {"color": "green", "value": warning}]
    else:
        steps = [{"color": "green", "value": None}, {"color": "orange", "value": warning},
                 {"color": "red", "value": target}]
    return {"mode": "absolute", "steps": steps}


def _axis(metric: Metric) -> dict[str, float]:
    """Soft bounds around the target, so a 1 % target is not squashed at the
    bottom of a 0-100 % axis; values beyond them still widen the axis."""
    target = metric.exact_target
    if metric.healthy == "below":
        return {"min": 0.0, "softMax": float(target * 2)}
    return {"max": 1.0, "softMin": float(target - 2 * (1 - target))}


def _ratio_field(metric: Metric) -> dict[str, Any]:
    axis = _axis(metric)
    custom: dict[str, Any] = {"thresholdsStyle": {"mode": "line+area"}}
    if "softMax" in axis:
        custom["axisSoftMax"] = axis["softMax"]
    if "softMin" in axis:
        custom["axisSoftMin"] = axis["softMin"]
    defaults: dict[str, Any] = {"unit": "percentunit", "decimals": 2,
                                "thresholds": _thresholds(metric), "custom": custom}
    for bound in ("min", "max"):
        if bound in axis:
            defaults[bound] = axis[bound]
    return {"defaults": defaults, "overrides": []}


def _by_name(name: str, **properties: Any) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": k, "value": v} for k, v in properties.items()]}


def _status_mappings() -> list[dict[str, Any]]:
    return [{"type": "value", "options": {
        status: {"color": color, "index": i, "text": status.replace("_", " ")}
        for i, (status, color) in enumerate(STATUS_COLORS.items())}}]


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]], refresh: str,
               description: str, variables: list[dict[str, Any]] | None = None,
               links: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "links": links or [],
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["popstream"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": refresh,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "panels": panels,
    }


# --- Fleet health -----------------------------------------------------------------


def worst_sellers(metric: Metric) -> str:
    """The N worst sellers past the volume floor: exactly N series as an instant
    query (``max by`` drops a duplicate a rebalance can leave). The floor is an
    ``unless`` over the few insufficient-volume status series, not an ``and`` over
    all the others: at 100,000 sellers that halves the query."""
    k = "bottomk" if metric.healthy == "at_least" else "topk"
    m = metric.name
    return (f'{k}({WORST_N}, max by (seller_id) (popstream_seller_metric_ratio{{metric="{m}"}})'
            " unless on (seller_id) "
            f'popstream_seller_metric_status{{metric="{m}",status="insufficient_volume"}})')


def _worst_variable(metric: Metric) -> dict[str, Any]:
    """A hidden variable holding the ids of the metric's N worst sellers (Grafana's
    top-N idiom: ``query_result`` and a regex). Its query is the only one that reads
    every exported seller's series; the table's four queries then select those N
    sellers by id, which costs nothing, instead of each ranking every seller again."""
    query = f"query_result({worst_sellers(metric)})"
    return {
        "name": f"worst_{metric.name}", "label": f"{WORST_N} worst sellers: {metric.name}",
        "type": "query", "datasource": DATASOURCE, "query": query, "definition": query,
        "regex": '/seller_id="([^"]+)"/', "multi": True, "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "hide": 2, "refresh": 2, "sort": 0,
    }


def _orders(predicate: str) -> str:
    """A column name for a count of orders satisfying ``predicate``."""
    return "orders" if predicate == "order" else f"{predicate.replace('_', ' ')} orders"


def _worst_table(lay: _Layout, metric: Metric) -> dict[str, Any]:
    m = metric.name
    sel = f'metric="{m}",seller_id=~"$worst_{m}"'
    queries = [
        Query(f"max by (seller_id) (popstream_seller_metric_ratio{{{sel}}})", instant=True),
        Query(f"max by (seller_id) (popstream_seller_metric_numerator_orders{{{sel}}})",
              instant=True),
        Query(f"max by (seller_id) (popstream_seller_metric_denominator_orders{{{sel}}})",
              instant=True),
        # The status series with the newest sample: a status that just changed may
        # still be in the lookback window (a backfill has no staleness markers, and a
        # rebalance briefly has two workers export the seller).
        Query("max by (seller_id, status) (topk by (seller_id) (1, timestamp("
              f"popstream_seller_metric_status{{{sel}}})))", instant=True),
    ]
    link = {"title": "Seller detail",
            "url": f"/d/{SELLER_UID}?var-seller=${{__value.raw}}&${{__url_time_range}}"}
    overrides = [
        _by_name("seller_id", displayName="seller", links=[link]),
        _by_name("Value #A", displayName=m, unit="percentunit", decimals=2,
                 thresholds=_thresholds(metric),
                 **{"custom.cellOptions": {"type": "color-background", "mode": "basic"}}),
        _by_name("Value #B", displayName=f"{_orders(metric.numerator)} (numerator)",
                 decimals=0),
        _by_name("Value #C", displayName=f"{_orders(metric.denominator)} (denominator)",
                 decimals=0),
        _by_name("status", mappings=_status_mappings(),
                 **{"custom.cellOptions": {"type": "color-text"}}),
    ]
    order = ["seller_id", "Value #A", "status", "Value #B", "Value #C"]
    return lay.panel(
        "table",
        f"{m}: {WORST_N} worst sellers ({_target_text(metric)})",
        queries, 12, 9,
        description=(
            f"The {WORST_N} sellers with the worst {m} among those with at least "
            f"{metric.min_orders} orders in the {metric.window_days}-day window "
            "(status not insufficient_volume). The value cell is coloured against the "
            "warning line and the target; the status also needs the minimum number of bad "
            "orders to be a breach. With the default export mode only sellers in warning "
            "or breach have series, so fewer rows means fewer such sellers."),
        fieldConfig={"defaults": {}, "overrides": overrides},
        options={"showHeader": True, "cellHeight": "sm",
                 "sortBy": [{"displayName": m, "desc": metric.healthy == "below"}]},
        transformations=[
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True, "Value #D": True},
                "indexByName": {name: i for i, name in enumerate(order)}}},
        ])


def _distribution(lay: _Layout, metric: Metric) -> dict[str, Any]:
    m = metric.name
    buckets = f'sum by (le) (popstream_fleet_metric_value_bucket{{metric="{m}"}})'
    worse_q, worse = ("0.1", "p10") if metric.healthy == "at_least" else ("0.9", "p90")
    return lay.panel(
        "timeseries", f"{m}: fleet and seller distribution ({_target_text(metric)})",
        [Query(f'sum(popstream_fleet_numerator_orders{{metric="{m}"}}) / '
               f'sum(popstream_fleet_denominator_orders{{metric="{m}"}})',
               "fleet-wide (all orders)"),
         Query(f"histogram_quantile(0.5, {buckets})", "median seller"),
         Query(f"histogram_quantile({worse_q}, {buckets})",
               f"{worse} seller (1 in 10 is worse)")],
        12, 9,
        description=(
            f"Fleet-wide {m} over every order, and quantiles across sellers with at least "
            f"{metric.min_orders} orders ({metric.window_days}-day window), interpolated "
            "in the fleet histogram whose buckets sit around the target. Orange line: "
            "warning; red line: target."),
        fieldConfig=_ratio_field(metric))


def fleet_health(catalog: Catalog) -> dict[str, Any]:
    lay = _Layout()
    per_status = "sum by (metric, status) (popstream_fleet_sellers)"
    panels = [
        lay.panel(
            "bargauge", "Sellers in breach, per metric",
            [Query('sum by (metric) (popstream_fleet_sellers{status="breach"})', "{{metric}}",
                   instant=True)], 8, 8,
            description="Every worker exports all four status counts, 0 included.",
            options={"orientation": "horizontal", "displayMode": "basic",
                     "showUnfilled": True, "reduceOptions": {"calcs": ["lastNotNull"]}},
            fieldConfig={"defaults": {"min": 0, "decimals": 0, "thresholds": {
                "mode": "absolute",
                "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}]}},
                "overrides": []}),
        lay.panel(
            "table", "Sellers per status",
            [Query(per_status, instant=True)], 10, 8,
            description="Sellers with an order in some window, by status, per metric. "
            "insufficient_volume: fewer orders than the metric's floor.",
            transformations=[{"id": "groupingToMatrix", "options": {
                "columnField": "status", "rowField": "metric", "valueField": "Value"}}],
            fieldConfig={"defaults": {"decimals": 0}, "overrides": [
                _by_name(s, color={"mode": "fixed", "fixedColor": c},
                         **{"custom.cellOptions": {"type": "color-text"}})
                for s, c in STATUS_COLORS.items()]},
            options={"showHeader": True}),
        lay.panel(
            "stat", "Sellers",
            [Query("sum(popstream_sellers_tracked)", "tracked", instant=True),
             Query("sum(popstream_sellers_tracked) - sum(popstream_sellers_unexported)",
                   "with per-seller series", instant=True)], 6, 8,
            description="Sellers with an order in some window; those with per-seller "
            "series are the ones in warning or breach (plus the watch list), or all of "
            "them with POPSTREAM_EXPORT=all.",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name",
                     "colorMode": "none"}),
        lay.panel(
            "timeseries", "Sellers in breach over time",
            [Query('sum by (metric) (popstream_fleet_sellers{status="breach"})', "{{metric}}")],
            12, 8, fieldConfig={"defaults": {"min": 0, "decimals": 0}, "overrides": []}),
        lay.panel(
            "timeseries", "Sellers in warning over time",
            [Query('sum by (metric) (popstream_fleet_sellers{status="warning"})',
                   "{{metric}}")],
            12, 8, fieldConfig={"defaults": {"min": 0, "decimals": 0}, "overrides": []}),
    ]
    for metric in catalog.metrics:
        panels.append(_distribution(lay, metric))
        panels.append(_worst_table(lay, metric))
    return _dashboard(
        "popstream-fleet", "popstream — Fleet health", panels, "1m",
        "Fleet aggregates computed by the workers over every seller, and the worst "
        "sellers per metric. Cheap at any fleet size: no panel reads every seller's "
        "history, and each metric's worst sellers are ranked once (a hidden variable).",
        [_worst_variable(m) for m in catalog.metrics])


# --- Seller detail ----------------------------------------------------------------


def _status_code(seller: str) -> str:
    """A seller's status per metric as a number (0 insufficient volume .. 3 breach)
    for a state timeline: each status series carries its status as a label."""
    parts = [f'{code} * popstream_seller_metric_status{{{seller},status="{status}"}}'
             for status, code in sorted(STATUS_CODES.items(), key=lambda kv: -kv[1])]
    return "max by (metric) (" + " or ".join(parts) + ")"


def seller_detail(catalog: Catalog) -> dict[str, Any]:
    lay = _Layout()
    seller = {
        "name": "seller", "label": "Seller id", "type": "textbox", "query": "",
        "current": {"text": "", "value": ""}, "options": [], "hide": 0,
        "description": "Type a seller id (or follow a link from a worst-sellers table). "
        "A text box, not a dropdown: at 100,000 sellers a list would load every id.",
    }
    # Where a browser reaches the worker that owns the seller, for the link to its
    # seller page: a hidden variable, read from the seller's own status series
    # (exported sellers: those in warning or breach, watched), whose scrape target
    # carries it as a label (prometheus_config.PAGE_LABEL; the scrape address
    # itself, e.g. worker-1:6066 in docker-compose, is often not reachable).
    owner = {
        "name": "worker", "label": "Worker", "type": "query", "hide": 2,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "query": 'query_result(max by (popstream_url) '
                 '(popstream_seller_metric_status{seller_id="$seller"}))',
        "regex": '/popstream_url="([^"]+)"/', "refresh": 2, "multi": False,
        "includeAll": False, "current": {}, "options": [],
        "description": "The seller's worker as a browser reaches it: the popstream_url "
        "label of its scrape target (hidden).",
    }
    page_link = {
        "title": "Seller page: the orders behind each metric", "type": "link",
        "url": "${worker}/sellers/${seller:percentencode}", "icon": "external link",
        "targetBlank": True, "asDropdown": False, "includeVars": False, "keepTime": False,
        "tooltip": "The worker's page for this seller (issue #13): each metric's orders, "
        "causes, headroom and recovery date. Reachable where the worker is.",
    }
    sel = 'seller_id="$seller"'
    status_mappings = [{"type": "value", "options": {
        str(code): {"color": STATUS_COLORS[status], "index": code,
                    "text": status.replace("_", " ")}
        for status, code in STATUS_CODES.items()}}]
    panels = [
        lay.panel(
            "table", "Now: status, value and orders per metric",
            [Query("max by (metric, status) (topk by (metric) (1, timestamp("
                   f"popstream_seller_metric_status{{{sel}}})))", instant=True),
             Query(f"max by (metric) (popstream_seller_metric_ratio{{{sel}}})", instant=True),
             Query(f"max by (metric) (popstream_seller_metric_numerator_orders{{{sel}}})",
                   instant=True),
             Query(f"max by (metric) (popstream_seller_metric_denominator_orders{{{sel}}})",
                   instant=True),
             Query("max by (metric) (popstream_metric_target_ratio)", instant=True),
             Query("max by (metric) (popstream_metric_warning_ratio)", instant=True)],
            14, 8,
            description="Missing rows: no per-seller series. With the default export "
            "mode (POPSTREAM_EXPORT=alerting) a seller in warning or breach has series for "
            "those metrics only, and a watch-listed seller (POPSTREAM_WATCHLIST) for every "
            "metric; /api/sellers/<id> on a worker answers for any seller.",
            transformations=[
                {"id": "merge", "options": {}},
                {"id": "organize", "options": {
                    "excludeByName": {"Time": True, "Value #A": True},
                    "indexByName": {n: i for i, n in enumerate(
                        ["metric", "status", "Value #B", "Value #E", "Value #F",
                         "Value #C", "Value #D"])}}}],
            fieldConfig={"defaults": {}, "overrides": [
                _by_name("status", mappings=_status_mappings(),
                         **{"custom.cellOptions": {"type": "color-text"}}),
                _by_name("Value #B", displayName="value", unit="percentunit", decimals=2),
                _by_name("Value #C", displayName="numerator (orders)", decimals=0),
                _by_name("Value #D", displayName="denominator (orders)", decimals=0),
                _by_name("Value #E", displayName="target", unit="percentunit", decimals=2),
                _by_name("Value #F", displayName="warning from", unit="percentunit",
                         decimals=2)]},
            options={"showHeader": True}),
        lay.panel(
            "bargauge", "What makes orders imperfect (Perfect Order window)",
            [Query(f"max by (cause) (popstream_seller_imperfect_orders{{{sel}}}) or ("
                   + " or ".join(f'label_replace(vector(0), "cause", "{c}", "", "")'
                                 for c in CAUSE_NAMES)
                   + f") and on () count(popstream_seller_metric_status{{{sel}}})",
                   "{{cause}}", instant=True)],
            10, 8,
            description="Orders per cause; 0 for a cause with none (shown only when the "
            "seller has series).",
            options={"orientation": "horizontal", "displayMode": "basic",
                     "reduceOptions": {"calcs": ["lastNotNull"]}},
            fieldConfig={"defaults": {"min": 0, "decimals": 0}, "overrides": []}),
        lay.panel(
            "state-timeline", "Status over time",
            [Query(_status_code(sel), "{{metric}}")], 24, 7,
            fieldConfig={"defaults": {"mappings": status_mappings, "color": {
                "mode": "thresholds"}, "thresholds": {"mode": "absolute", "steps": [
                    {"color": STATUS_COLORS["insufficient_volume"], "value": None}]}},
                "overrides": []},
            options={"showValue": "never", "mergeValues": True}),
    ]
    for metric in catalog.metrics:
        m = metric.name
        panels.append(lay.panel(
            "timeseries", f"{m} ({metric.window_days} d): {_target_text(metric)}",
            [Query(f'max(popstream_seller_metric_ratio{{{sel},metric="{m}"}})', m)],
            8, 8, fieldConfig=_ratio_field(metric)))
    panels.append(lay.panel(
        "timeseries", "Orders behind each metric: numerator (solid) and denominator (dashed)",
        [Query(f"max by (metric) (popstream_seller_metric_numerator_orders{{{sel}}})",
               "{{metric}} · numerator"),
         Query(f"max by (metric) (popstream_seller_metric_denominator_orders{{{sel}}})",
               "{{metric}} · denominator")],
        24, 8,
        fieldConfig={"defaults": {"min": 0, "decimals": 0}, "overrides": [
            {"matcher": {"id": "byFrameRefID", "options": "B"}, "properties": [
                {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]}]}))
    return _dashboard(
        SELLER_UID, "popstream — Seller detail", panels, "1m",
        "One seller: every metric against its target, its status over time, the orders "
        "behind each rate and what makes its orders imperfect. The link at the top "
        "opens the worker's seller page: which orders, and when they stop counting.",
        [seller, owner], [page_link])


# --- Pipeline ---------------------------------------------------------------------


def pipeline(catalog: Catalog) -> dict[str, Any]:
    lay = _Layout()
    rate = "sum by (le) (rate(popstream_event_latency_seconds_bucket[$__rate_interval]))"
    panels = [
        lay.panel("timeseries", "Events applied per second, by type",
                  [Query("sum by (type) (rate(popstream_events_processed_total"
                         "[$__rate_interval]))", "{{type}}")], 12, 8),
        lay.panel("timeseries", "Produce-to-gauge latency",
                  [Query(f"histogram_quantile(0.5, {rate})", "p50"),
                   Query(f"histogram_quantile(0.99, {rate})", "p99")], 12, 8,
                  fieldConfig={"defaults": {"unit": "s"}, "overrides": []}),
        lay.panel("timeseries", "Messages consumed per second, by worker",
                  [Query("sum by (instance) (rate(popstream_messages_consumed_total"
                         "[$__rate_interval]))", "{{instance}}")], 8, 8),
        lay.panel("timeseries", "Consumer lag (messages), by topic",
                  [Query("sum by (topic) (popstream_consumer_lag_messages)", "{{topic}}")],
                  8, 8, fieldConfig={"defaults": {"min": 0}, "overrides": []}),
        lay.panel("timeseries", "Dead-lettered events per second, by reason",
                  [Query("sum by (reason) (rate(popstream_events_invalid_total"
                         '[$__rate_interval])) or on () label_replace(vector(0), "reason", '
                         '"none", "", "")', "{{reason}}")], 8, 8,
                  fieldConfig={"defaults": {"min": 0}, "overrides": []}),
        lay.panel("timeseries", "State",
                  [Query("sum(popstream_pending_orders)", "pending orders"),
                   Query("sum(popstream_tracked_orders)", "tracked orders"),
                   Query("sum(popstream_sellers_tracked)", "sellers tracked"),
                   Query("sum(popstream_sellers_unexported)", "sellers without series")],
                  12, 8),
        lay.panel("stat", "Workers up",
                  [Query('sum(up{job="popstream"})', "up", instant=True)], 4, 8,
                  options={"reduceOptions": {"calcs": ["lastNotNull"]}}),
        lay.panel("stat", "Workers ready",
                  [Query("sum(popstream_worker_ready)", "ready", instant=True)], 4, 8,
                  description="0 while a worker recovers its state (its /metrics answers "
                  "503 meanwhile).",
                  options={"reduceOptions": {"calcs": ["lastNotNull"]}}),
        lay.panel("stat", "Worker uptime",
                  [Query("min(time() - popstream_worker_started_seconds)", "youngest",
                         instant=True)], 4, 8,
                  fieldConfig={"defaults": {"unit": "s"}, "overrides": []},
                  options={"reduceOptions": {"calcs": ["lastNotNull"]}}),
    ]
    return _dashboard("popstream-pipeline", "popstream — Pipeline", panels, "30s",
                      "Throughput, latency, lag, dead letters and state of the workers.")


def dashboards(catalog: Catalog) -> dict[str, dict[str, Any]]:
    return {"fleet-health": fleet_health(catalog), "seller-detail": seller_detail(catalog),
            "pipeline": pipeline(catalog)}


# --- for tests and benchmarks -----------------------------------------------------

_WORST_MATCHER: Final = re.compile(r'(\w+)\{([^{}]*),seller_id=~"\$(worst_\w+)"\}')


@dataclass(frozen=True, slots=True)
class Variable:
    """A ``query_result`` variable: Grafana runs ``expr`` as an instant query at the
    end of the range, takes ``regex``'s group from each series, and interpolates the
    values into a regex alternation."""

    name: str
    expr: str
    regex: str

    def values(self, result: list[dict[str, Any]]) -> list[str]:
        """The variable's values from the instant query's result (Prometheus JSON)."""
        pattern = re.compile(self.regex.strip("/"))
        out = []
        for series in result:
            labels = ",".join(f'{k}="{v}"' for k, v in series["metric"].items())
            text = f"{{{labels}}} {series['value'][1]} {series['value'][0]}"
            if (match := pattern.search(text)) is not None:
                out.append(match.group(1))
        return out

    @staticmethod
    def interpolate(values: list[str]) -> str:
        """As Grafana's Prometheus datasource writes a multi-value variable into a
        regex matcher: each value regex-escaped, joined by ``|``, in parentheses."""
        escaped = [re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\1", v) for v in values]
        return "(" + "|".join(escaped) + ")" if len(escaped) > 1 else "".join(escaped)


def variables(dashboard: dict[str, Any]) -> list[Variable]:
    """The dashboard's ``query_result`` variables."""
    out = []
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query" and v["query"].startswith("query_result("):
            out.append(Variable(v["name"], v["query"][len("query_result("):-1], v["regex"]))
    return out


@dataclass(frozen=True, slots=True)
class PanelQuery:
    """One query as Grafana runs it: ``rows`` is the exact row count a worst-N
    table shows (None for other panels)."""

    panel: str
    ref_id: str
    expr: str
    instant: bool
    rows: int | None

    def runnable(self, rate_interval: str, seller: str = "",
                 values: dict[str, str] | None = None) -> str:
        """The expression with Grafana's variables filled in (``values``: each
        variable's interpolated text)."""
        expr = self.expr.replace("$__rate_interval", rate_interval).replace("$seller", seller)
        for name, text in sorted((values or {}).items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(f"${name}", text)
        return expr


def panel_targets(dashboard: dict[str, Any]) -> list[PanelQuery]:
    out = []
    for panel in dashboard["panels"]:
        for t in panel["targets"]:
            expr: str = t["expr"]
            worst = t["refId"] == "A" and _WORST_MATCHER.search(expr) is not None
            out.append(PanelQuery(panel["title"], t["refId"], expr, bool(t["instant"]),
                                  WORST_N if worst else None))
    return out


def panel_queries(dashboard: dict[str, Any], rate_interval: str = "1m"
                  ) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every query, runnable in Prometheus alone, for
    tests: ``$__rate_interval`` is replaced by ``rate_interval``; a selector limited
    to a ``query_result`` variable's sellers is joined with the variable's query
    instead; ``$seller`` is left to the caller."""
    by_name = {v.name: v.expr for v in variables(dashboard)}

    def inline(match: re.Match[str]) -> str:
        name, labels, variable = match.groups()
        return f"({name}{{{labels}}} and on (seller_id) {by_name[variable]})"

    return [(q.panel, _WORST_MATCHER.sub(inline, q.expr.replace(
        "$__rate_interval", rate_interval))) for q in panel_targets(dashboard)]
