"""Prometheus recording/alert rules and the Alertmanager config, generated from
the metric catalog so that alerts never drift from what the workers export.

``popstream ops generate`` writes ``prometheus/rules/popstream.rules.yml`` and
``prometheus/alertmanager.yml``; a unit test fails when the committed files are
not what this module produces. Thresholds are never hard-coded in expressions:
targets come from ``popstream_metric_target_ratio`` (exported by every worker),
and the two tunables — the minimum orders for a rate to mean anything and the
early-warning margin — are recording rules of their own, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from streams.engine.catalog import Catalog, Metric

# What the seller should do, per metric (seed 000: POP and its causes; seed 004:
# keep stock accurate, confirm shipments on time, automate order entry).
RUNBOOKS: Final[dict[str, str]] = {
    "perfect_order_percentage": (
        "Find the cause driving imperfect orders (see the seller's cause breakdown): "
        "answer buyer messages or mark thank-you notes 'No Response Needed', keep stock "
        "accurate to avoid cancellations, confirm shipments before ship_by, and resolve "
        "complaints before they become negative feedback, claims or refunds."
    ),
    "order_defect_rate": (
        "Contact buyers behind negative feedback, A-to-z claims and chargebacks; fix the "
        "listing or fulfilment problem they share (wrong item, condition, damage, late "
        "delivery). Sustained ODR >= 1% risks suspension."
    ),
    "pre_fulfillment_cancel_rate": (
        "Stop cancelling for lack of stock: sync inventory to the marketplace "
        "automatically, fix pricing errors before orders arrive, and pause listings you "
        "cannot fulfil."
    ),
    "late_shipment_rate": (
        "Confirm shipments before ship_by: automate order import instead of manual data "
        "entry, set a realistic handling time, and ship the oldest orders first."
    ),
    "refund_rate": (
        "Review refund reasons: improve descriptions and condition notes, check packaging, "
        "and catch fulfilment errors before shipping."
    ),
    "valid_tracking_rate": (
        "Upload a valid tracking number with every shipment confirmation; use carriers "
        "the marketplace recognises and automate confirmation from your shipping software."
    ),
}


@dataclass(frozen=True, slots=True)
class AlertTiming:
    """How long a condition must hold before an alert fires."""

    breach_for: str = "5m"
    warning_for: str = "15m"
    worker_down_for: str = "1m"
    pipeline_for: str = "10m"


def _fmt_value(expr: str) -> str:
    return "{{ with query \"" + expr + "\" }}{{ . | first | value | humanizePercentage }}{{ end }}"


def _seller_alert(metric: Metric, kind: str, timing: AlertTiming) -> dict[str, Any]:
    name = "".join(part.title() for part in metric.name.split("_"))
    target = _fmt_value(f"popstream:metric_target:ratio{{metric='{metric.name}'}}")
    op = ">=" if metric.healthy == "at_least" else "<"
    if kind == "breach":
        expr = f'popstream:seller_metric_breach:guarded{{metric="{metric.name}"}}'
        summary = (
            f"Seller {{{{ $labels.seller_id }}}} breaches {metric.name}: "
            f"{{{{ $value | humanizePercentage }}}} (healthy {op} {target})"
        )
        severity, hold = "critical", timing.breach_for
    else:
        expr = f'popstream:seller_metric_warning:guarded{{metric="{metric.name}"}}'
        summary = (
            f"Seller {{{{ $labels.seller_id }}}} is close to breaching {metric.name}: "
            f"{{{{ $value | humanizePercentage }}}} (healthy {op} {target})"
        )
        severity, hold = "warning", timing.warning_for
    return {
        "alert": f"Popstream{name}{'Breach' if kind == 'breach' else 'Warning'}",
        "expr": expr,
        "for": hold,
        "labels": {"severity": severity, "metric": metric.name},
        "annotations": {
            "summary": summary,
            "value": "{{ $value }}",
            "target": target,
            "description": metric.description,
            "runbook": RUNBOOKS.get(metric.name, "See the seller's defect causes."),
        },
    }


def prometheus_rules(
    catalog: Catalog,
    min_orders: int = 10,
    warning_margin: float = 0.2,
    timing: AlertTiming | None = None,
) -> dict[str, Any]:
    """The rules file as a document (dump it with YAML).

    ``warning_margin``: a ``below`` metric warns at ``(1 - margin) * target``; an
    ``at_least`` metric warns below ``target + margin * (1 - target)``.
    """
    timing = timing or AlertTiming()
    recording: list[dict[str, str]] = [
        {"record": "popstream:config:min_orders", "expr": f"vector({min_orders})"},
        {"record": "popstream:config:warning_margin", "expr": f"vector({warning_margin})"},
        # Dedupe across workers: during a rebalance two may briefly export a seller.
        {"record": "popstream:metric_target:ratio",
         "expr": "max by (metric, healthy) (popstream_metric_target_ratio)"},
        {"record": "popstream:seller_metric:ratio",
         "expr": "max by (seller_id, metric) (popstream_seller_metric_ratio)"},
        {"record": "popstream:seller_metric_denominator:orders",
         "expr": "max by (seller_id, metric) (popstream_seller_metric_denominator_orders)"},
        {"record": "popstream:seller_metric_numerator:orders",
         "expr": "max by (seller_id, metric) (popstream_seller_metric_numerator_orders)"},
        {"record": "popstream:metric_warning:ratio",
         "expr": (
             'popstream:metric_target:ratio{healthy="below"} * on() group_left() '
             "(1 - popstream:config:warning_margin)"
             ' or popstream:metric_target:ratio{healthy="at_least"} + '
             "(popstream:config:warning_margin * on() group_right() "
             '(1 - popstream:metric_target:ratio{healthy="at_least"}))'
         )},
        {"record": "popstream:seller_metric_breach",
         "expr": (
             "popstream:seller_metric:ratio < on(metric) group_left() "
             'popstream:metric_target:ratio{healthy="at_least"}'
             " or popstream:seller_metric:ratio >= on(metric) group_left() "
             'popstream:metric_target:ratio{healthy="below"}'
         )},
        {"record": "popstream:seller_metric_near",
         "expr": (
             "popstream:seller_metric:ratio < on(metric) group_left() "
             'popstream:metric_warning:ratio{healthy="at_least"}'
             " or popstream:seller_metric:ratio >= on(metric) group_left() "
             'popstream:metric_warning:ratio{healthy="below"}'
         )},
        # The minimum-orders guard: a rate over too few orders means nothing.
        {"record": "popstream:seller_metric_breach:guarded",
         "expr": (
             "popstream:seller_metric_breach and on(seller_id, metric) "
             "(popstream:seller_metric_denominator:orders >= on() group_left() "
             "popstream:config:min_orders)"
         )},
        {"record": "popstream:seller_metric_warning:guarded",
         "expr": (
             "(popstream:seller_metric_near unless on(seller_id, metric) "
             "popstream:seller_metric_breach) and on(seller_id, metric) "
             "(popstream:seller_metric_denominator:orders >= on() group_left() "
             "popstream:config:min_orders)"
         )},
        # Fleet views.
        {"record": "popstream:sellers_in_breach:count",
         "expr": "count by (metric) (popstream:seller_metric_breach:guarded)"},
        {"record": "popstream:sellers:count",
         "expr": "count by (metric) (popstream:seller_metric:ratio)"},
        {"record": "popstream:fleet_metric:ratio",
         "expr": (
             "sum by (metric) (popstream:seller_metric_numerator:orders) / "
             "sum by (metric) (popstream:seller_metric_denominator:orders)"
         )},
    ]
    seller_alerts = [
        _seller_alert(m, kind, timing) for m in catalog.metrics for kind in ("breach", "warning")
    ]
    pipeline_alerts: list[dict[str, Any]] = [
        {
            "alert": "PopstreamWorkerDown",
            "expr": 'up{job="popstream"} == 0',
            "for": timing.worker_down_for,
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "popstream worker {{ $labels.instance }} is down",
                "runbook": "Check the worker's logs and restart it; its partitions move to "
                "the other workers after the session timeout.",
            },
        },
        {
            "alert": "PopstreamProcessingStalled",
            "expr": (
                "sum by (instance) (rate(popstream_messages_consumed_total[5m])) == 0 "
                "and sum by (instance) (popstream_consumer_lag_messages) > 0"
            ),
            "for": timing.pipeline_for,
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "popstream worker {{ $labels.instance }} consumes nothing while "
                "messages wait",
                "runbook": "Look for a stuck rebalance or a broker problem in the worker log.",
            },
        },
        {
            "alert": "PopstreamConsumerLagGrowing",
            "expr": (
                "sum(popstream_consumer_lag_messages) > 10000 and "
                "deriv(sum(popstream_consumer_lag_messages)[10m:1m]) > 0"
            ),
            "for": timing.pipeline_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "popstream is falling behind: {{ $value }} messages of lag",
                "runbook": "Add workers (up to the number of partitions) or partitions.",
            },
        },
        {
            "alert": "PopstreamDeadLetters",
            "expr": "sum(rate(popstream_events_invalid_total[5m])) > 0.1",
            "for": timing.pipeline_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $value | humanize }} invalid events/s go to the dead-letter topic",
                "runbook": "Read popstream-deadletter (header popstream-reason) and fix the "
                "producer.",
            },
        },
        {
            "alert": "PopstreamPendingOrdersPilingUp",
            "expr": (
                "sum(popstream_pending_orders) > 10000 and "
                "deriv(sum(popstream_pending_orders)[30m:5m]) > 0"
            ),
            "for": "30m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $value }} orders have events but no order event",
                "runbook": "An order producer is missing or lagging: check the orders topic.",
            },
        },
    ]
    return {
        "groups": [
            {"name": "popstream-recording", "interval": "15s", "rules": recording},
            {"name": "popstream-sellers", "rules": seller_alerts},
            {"name": "popstream-pipeline", "rules": pipeline_alerts},
        ]
    }


def alertmanager_config(webhook_url: str = "http://alert-sink:5001/") -> dict[str, Any]:
    """Routing by severity, grouping by seller, the warning inhibited by the breach."""
    return {
        "route": {
            "receiver": "tickets",
            "group_by": ["alertname", "seller_id"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"matchers": ['severity="critical"'], "receiver": "pager",
                 "group_wait": "10s"},
                {"matchers": ['severity="warning"'], "receiver": "tickets"},
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["seller_id", "metric"],
            }
        ],
        "receivers": [
            {"name": "pager", "webhook_configs": [
                {"url": webhook_url.rstrip("/") + "/pager", "send_resolved": True}]},
            {"name": "tickets", "webhook_configs": [
                {"url": webhook_url.rstrip("/") + "/tickets", "send_resolved": True}]},
        ],
    }
