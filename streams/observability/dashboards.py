"""Grafana dashboards as code: Fleet health, Seller detail, Pipeline.

Plain JSON models (Grafana's own format, schemaVersion 39) built from the catalog,
so every metric gets its panels and its target drawn as a threshold. Queries use
the recording rules of :mod:`streams.observability.rules` where they exist.
"""

from __future__ import annotations

from typing import Any, Final

from streams.engine.catalog import Catalog, Metric

DATASOURCE: Final = {"type": "prometheus", "uid": "prometheus"}


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

    def panel(self, kind: str, title: str, targets: list[tuple[str, str]], w: int, h: int,
              **extra: Any) -> dict[str, Any]:
        panel = {
            "id": self.next_id,
            "type": kind,
            "title": title,
            "datasource": DATASOURCE,
            "gridPos": self.place(w, h),
            "targets": [
                {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                 "datasource": DATASOURCE}
                for i, (expr, legend) in enumerate(targets)
            ],
            **extra,
        }
        self.next_id += 1
        return panel


def _thresholds(metric: Metric) -> dict[str, Any]:
    bad, good = "red", "green"
    low, high = (bad, good) if metric.healthy == "at_least" else (good, bad)
    return {"mode": "absolute",
            "steps": [{"color": low, "value": None}, {"color": high, "value": metric.target}]}


def _ratio_defaults(metric: Metric) -> dict[str, Any]:
    return {"defaults": {"unit": "percentunit", "min": 0, "max": 1,
                         "thresholds": _thresholds(metric),
                         "custom": {"thresholdsStyle": {"mode": "line+area"}}},
            "overrides": []}


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]],
               variables: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["popstream"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "panels": panels,
    }


def fleet_health(catalog: Catalog) -> dict[str, Any]:
    lay = _Layout()
    panels = [
        lay.panel("bargauge", "Sellers in breach, per metric",
                  [("popstream:sellers_in_breach:count", "{{metric}}")], 12, 8,
                  options={"orientation": "horizontal", "displayMode": "basic"}),
        lay.panel("timeseries", "Fleet-wide rate per metric",
                  [("popstream:fleet_metric:ratio", "{{metric}}")], 12, 8,
                  fieldConfig={"defaults": {"unit": "percentunit"}, "overrides": []}),
    ]
    for m in catalog.metrics:
        sel = f'popstream:seller_metric:ratio{{metric="{m.name}"}}'
        panels.append(lay.panel(
            "timeseries", f"{m.name}: distribution across sellers",
            [(f"quantile(0.1, {sel})", "p10"), (f"quantile(0.5, {sel})", "median"),
             (f"quantile(0.9, {sel})", "p90"),
             (f'popstream:metric_target:ratio{{metric="{m.name}"}}', "target")],
            12, 8, fieldConfig=_ratio_defaults(m)))
        worst = "bottomk" if m.healthy == "at_least" else "topk"
        panels.append(lay.panel(
            "table", f"{m.name}: 20 worst sellers",
            [(f"{worst}(20, {sel})", "{{seller_id}}")], 12, 8,
            fieldConfig=_ratio_defaults(m),
            options={"showHeader": True},
            transformations=[{"id": "reduce", "options": {"reducers": ["lastNotNull"]}}]))
    return _dashboard("popstream-fleet", "popstream — Fleet health", panels)


def seller_detail(catalog: Catalog) -> dict[str, Any]:
    lay = _Layout()
    seller = {
        "name": "seller", "label": "Seller", "type": "query", "datasource": DATASOURCE,
        "query": {"query": "label_values(popstream:seller_metric:ratio, seller_id)",
                  "refId": "seller"},
        "definition": "label_values(popstream:seller_metric:ratio, seller_id)",
        "refresh": 2, "sort": 1, "includeAll": False, "multi": False,
    }
    panels = []
    for m in catalog.metrics:
        panels.append(lay.panel(
            "timeseries", f"{m.name} ({m.window_days} d) against its target",
            [(f'popstream:seller_metric:ratio{{seller_id="$seller",metric="{m.name}"}}',
              "$seller"),
             (f'popstream:metric_target:ratio{{metric="{m.name}"}}', "target")],
            8, 8, fieldConfig=_ratio_defaults(m)))
    panels.append(lay.panel(
        "table", "Numerator and denominator per metric",
        [('popstream:seller_metric_numerator:orders{seller_id="$seller"}', "{{metric}}"),
         ('popstream:seller_metric_denominator:orders{seller_id="$seller"}', "{{metric}}")],
        12, 8, transformations=[{"id": "reduce", "options": {"reducers": ["lastNotNull"]}}]))
    panels.append(lay.panel(
        "bargauge", "What makes orders imperfect (Perfect Order window)",
        [('max by (cause) (popstream_seller_imperfect_orders{seller_id="$seller"})',
          "{{cause}}")], 12, 8, options={"orientation": "horizontal"}))
    return _dashboard("popstream-seller", "popstream — Seller detail", panels, [seller])


def pipeline(catalog: Catalog) -> dict[str, Any]:
    lay = _Layout()
    rate = "sum by (le) (rate(popstream_event_latency_seconds_bucket[1m]))"
    panels = [
        lay.panel("timeseries", "Events applied per second, by type",
                  [("sum by (type) (rate(popstream_events_processed_total[1m]))", "{{type}}")],
                  12, 8),
        lay.panel("timeseries", "Produce-to-gauge latency",
                  [(f"histogram_quantile(0.5, {rate})", "p50"),
                   (f"histogram_quantile(0.99, {rate})", "p99")], 12, 8,
                  fieldConfig={"defaults": {"unit": "s"}, "overrides": []}),
        lay.panel("timeseries", "Consumer lag (messages), by topic",
                  [("sum by (topic) (popstream_consumer_lag_messages)", "{{topic}}")], 8, 8),
        lay.panel("timeseries", "Dead-lettered events per second, by reason",
                  [("sum by (reason) (rate(popstream_events_invalid_total[5m]))",
                    "{{reason}}")], 8, 8),
        lay.panel("timeseries", "State",
                  [("sum(popstream_pending_orders)", "pending orders"),
                   ("sum(popstream_tracked_orders)", "tracked orders"),
                   ("sum(popstream_sellers)", "sellers")], 8, 8),
        lay.panel("stat", "Workers up", [('sum(up{job="popstream"})', "up")], 6, 4),
    ]
    return _dashboard("popstream-pipeline", "popstream — Pipeline", panels)


def dashboards(catalog: Catalog) -> dict[str, dict[str, Any]]:
    return {"fleet-health": fleet_health(catalog), "seller-detail": seller_detail(catalog),
            "pipeline": pipeline(catalog)}


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every query, for tests that run them."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
