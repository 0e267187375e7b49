"""Prometheus recording/alert rules, their runbooks and the Alertmanager config,
generated from the metric catalog so that alerts never drift from what the
workers export.

``popstream ops generate`` writes ``prometheus/rules/popstream.rules.yml``,
``prometheus/rules/runbooks.md`` and ``prometheus/alertmanager.yml``; a unit test
fails when the committed files are not what this module produces.

Who hears about what (issue #10):

* **Seller alerts** (``severity: seller``) come from the status the worker
  computed, ``popstream_seller_metric_status{status="breach"|"warning"}``: the
  worker is the single source of truth for targets, warning lines and volume
  floors, compared exactly; the rules never re-derive a status from floats. They go
  to the ``seller-notifications`` receiver, grouped by seller and repeated at most
  daily: a seller's breach is news for that seller and for account-health staff,
  never a page.
* **Pipeline and fleet alerts** (``severity: page``) go to the ``pager``: a worker
  down or stalled, lag or pending orders growing, dead letters, a scrape over its
  sample limit, the share of sellers in breach jumping, a metric's fleet-wide
  ratio past its target.

Recording rules only aggregate (per metric, per job): no per-seller series is
copied. Their names follow ``level:metric:operations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

from streams.engine.catalog import Catalog, Metric
from streams.observability.prometheus_config import DEFAULT_SIZING, JOB, SELF_JOB

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

# Where runbooks.md is read by people following an alert's runbook_url. The file is
# generated next to the rules; point this at wherever the repository is browsed.
RUNBOOK_BASE: Final = "prometheus/rules/runbooks.md"

SELLER_RECEIVER: Final = "seller-notifications"
PAGER_RECEIVER: Final = "pager"


@dataclass(frozen=True, slots=True)
class AlertTiming:
    """How long a condition must hold before an alert fires, and how long a firing
    alert outlives the series behind it.

    ``keep_firing_for``: a restarting worker answers ``/metrics`` with 503 until its
    state is recovered (measured ~10 s), so every series it exports is absent from
    the first failed scrape until recovery; a rebalance adds up to the session
    timeout (30 s) before another worker owns the partitions, plus that worker's
    recovery, plus a scrape interval (15 s): about a minute. Without
    ``keep_firing_for`` that gap resolves every breaching seller's alert (the seller
    is told "resolved") and fires it again ``for`` later. 10 minutes rides out a
    slow recovery and a rolling restart that moves a seller twice; the price is that
    a real recovery is reported 10 minutes late, on metrics over 7 to 90 days.
    Fleet alerts keep it too: their sums lose a worker's share during its restart.
    """

    breach_for: str = "5m"
    warning_for: str = "15m"
    keep_firing_for: str = "10m"
    # A restart is ~10 s of 503: a minute (4 failed scrapes at 15 s) is 6 restarts'
    # worth, and a crashed worker's partitions have moved to the others after the
    # 30 s session timeout, so nothing waits on the human meanwhile.
    worker_down_for: str = "1m"
    pipeline_for: str = "10m"
    fleet_for: str = "15m"


@dataclass(frozen=True, slots=True)
class FleetThresholds:
    """When the fleet's numbers page: the share of sellers (with enough volume to
    have a status) in breach on a metric more than ``jump`` times what it was
    ``jump_over`` ago, above ``min_share``, and at least ``min_sellers`` of them
    (a small marketplace's 1 % is one seller: not a page)."""

    jump: int = 2
    jump_over: str = "1d"
    min_share: str = "0.01"
    min_sellers: int = 5


def exact_decimal(x: float | Fraction | str) -> str:
    """A catalog number as the decimal it was written as: ``0.02``, never
    ``0.020000000000000004``. A float is read through ``repr`` (the shortest
    decimal that reads back as it); the text is checked to be exactly the number."""
    value = x if isinstance(x, Fraction) else Fraction(repr(x) if isinstance(x, float) else x)
    text = format((Decimal(value.numerator) / Decimal(value.denominator)).normalize(), "f")
    if Fraction(text) != value:
        raise ValueError(f"{x!r} has no exact short decimal form (got {text})")
    return text


def exact_percent(x: float | Fraction) -> str:
    value = x if isinstance(x, Fraction) else Fraction(repr(x))
    return exact_decimal(value * 100) + "%"


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


def _runbook_url(base: str, alert: str) -> str:
    return f"{base}#{alert.lower()}"


# --- recording rules ----------------------------------------------------------


def recording_rules() -> list[dict[str, str]]:
    """Fleet and catalog aggregates for alerts and dashboards: a few series per
    metric, whatever the number of sellers. During a rebalance two workers may
    briefly count the same seller; the shares below are ratios of such sums, so the
    double count mostly cancels out."""
    return [
        # Catalog, deduplicated across workers (every worker exports it).
        {"record": "metric:popstream_metric_target_ratio:max",
         "expr": "max by (metric, healthy) (popstream_metric_target_ratio)"},
        {"record": "metric:popstream_metric_warning_ratio:max",
         "expr": "max by (metric) (popstream_metric_warning_ratio)"},
        {"record": "metric:popstream_metric_min_orders:max",
         "expr": "max by (metric) (popstream_metric_min_orders)"},
        {"record": "metric:popstream_metric_min_count:max",
         "expr": "max by (metric) (popstream_metric_min_count)"},
        # Sellers per status (workers own disjoint sellers: a sum).
        {"record": "metric:popstream_fleet_sellers:sum",
         "expr": "sum by (metric, status) (popstream_fleet_sellers)"},
        {"record": "metric:popstream_fleet_sellers_with_volume:sum",
         "expr": 'sum by (metric) (popstream_fleet_sellers{status!="insufficient_volume"})'},
        # Share of sellers with volume in breach; no sample without such sellers.
        {"record": "metric:popstream_fleet_sellers_in_breach:ratio",
         "expr": ('metric:popstream_fleet_sellers:sum{status="breach"} / ignoring (status) '
                  "(metric:popstream_fleet_sellers_with_volume:sum > 0)")},
        # The fleet-wide ratio: every order of every seller, over every order.
        {"record": "metric:popstream_fleet_numerator_orders:sum",
         "expr": "sum by (metric) (popstream_fleet_numerator_orders)"},
        {"record": "metric:popstream_fleet_denominator_orders:sum",
         "expr": "sum by (metric) (popstream_fleet_denominator_orders)"},
        {"record": "metric:popstream_fleet_ratio:ratio",
         "expr": ("metric:popstream_fleet_numerator_orders:sum / "
                  "(metric:popstream_fleet_denominator_orders:sum > 0)")},
        # Distribution of sellers' values per metric (sellers with volume).
        {"record": "metric:popstream_fleet_metric_value_bucket:sum",
         "expr": "sum by (metric, le) (popstream_fleet_metric_value_bucket)"},
        {"record": "job:popstream_sellers_tracked:sum",
         "expr": "sum by (job) (popstream_sellers_tracked)"},
        {"record": "job:popstream_sellers_unexported:sum",
         "expr": "sum by (job) (popstream_sellers_unexported)"},
        # A partition is counted once even while two workers report it.
        {"record": "job:popstream_consumer_lag_messages:sum",
         "expr": ("sum by (job) (max by (job, topic, partition) "
                  "(popstream_consumer_lag_messages))")},
        {"record": "job:popstream_pending_orders:sum",
         "expr": "sum by (job) (popstream_pending_orders)"},
    ]


# --- seller alerts -------------------------------------------------------------


def _rule_text(metric: Metric) -> tuple[str, str, str]:
    """(healthy, breach, warning) in words, from the exact catalog numbers."""
    target = exact_percent(metric.exact_target)
    warning = exact_percent(metric.exact_warning)
    if metric.healthy == "below":
        return f"below {target}", f"at or above {target}", f"from {warning}"
    return f"at least {target}", f"under {target}", f"under {warning}"


def _seller_alert(metric: Metric, status: str, timing: AlertTiming,
                  runbook_base: str) -> dict[str, Any]:
    name = f"Popstream{_camel(metric.name)}{'Breach' if status == 'breach' else 'Warning'}"
    healthy, breach, warning = _rule_text(metric)
    # $value is the seller's ratio: the status series is 1, so take the value from
    # the ratio, matched once in the expression, not queried per alert in a template.
    # max by: while two workers export a seller during a rebalance, one alert.
    expr = (
        f'max by (seller_id, metric) (popstream_seller_metric_ratio{{metric="{metric.name}"}}) '
        "and on (seller_id, metric) "
        f'popstream_seller_metric_status{{metric="{metric.name}",status="{status}"}} == 1'
    )
    if status == "breach":
        summary = (f"Seller {{{{ $labels.seller_id }}}} breaches {metric.name}: "
                   f"{{{{ $value | humanizePercentage }}}} (healthy {healthy})")
        hold = timing.breach_for
    else:
        summary = (f"Seller {{{{ $labels.seller_id }}}} is close to breaching {metric.name}: "
                   f"{{{{ $value | humanizePercentage }}}} (healthy {healthy}, "
                   f"warning {warning})")
        hold = timing.warning_for
    floors = (f"Breach: {breach} over {metric.window_days} days, with at least "
              f"{metric.min_orders} orders of which at least {metric.min_count} count "
              f"against the seller; warning {warning} (or breached with fewer).")
    return {
        "alert": name,
        "expr": expr,
        "for": hold,
        "keep_firing_for": timing.keep_firing_for,
        "labels": {"severity": "seller", "seller_status": status, "metric": metric.name},
        "annotations": {
            "summary": summary,
            "description": f"{metric.description} {floors}".strip(),
            "action": RUNBOOKS.get(metric.name, "See the seller's defect causes."),
            "runbook_url": _runbook_url(runbook_base, name),
        },
    }


# --- pipeline and fleet alerts -----------------------------------------------------


def _page(name: str, expr: str, hold: str, summary: str, description: str,
          runbook_base: str, keep_firing_for: str | None = None,
          labels: dict[str, str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr, "for": hold}
    if keep_firing_for:
        rule["keep_firing_for"] = keep_firing_for
    rule["labels"] = {"severity": "page", **(labels or {})}
    rule["annotations"] = {"summary": summary, "description": description,
                           "runbook_url": _runbook_url(runbook_base, name)}
    return rule


# The three ways a worker stops processing. (1) It owns partitions with messages
# waiting and consumed nothing in 5 minutes: ``unless`` also catches a worker stuck
# before its first message, whose consumed counter has no series at all (a ``== 0``
# on its rate would be empty, hence blind). (2) It is up but not ready (recovering)
# for the whole ``for``. (3) No worker owns any partition (no lag series anywhere):
# a group stuck in its first rebalance; ``popstream_worker_started_seconds`` exists
# from a worker's first scrape, before anything else would.
STALLED_EXPR: Final = (
    "(sum by (job, instance) (popstream_consumer_lag_messages) > 0 "
    "unless on (job, instance) "
    "sum by (job, instance) (rate(popstream_messages_consumed_total[5m])) > 0) "
    "or on (job, instance) (popstream_worker_ready == 0) "
    "or on (job, instance) (popstream_worker_started_seconds "
    "unless on () popstream_consumer_lag_messages)"
)


def pipeline_alerts(timing: AlertTiming, runbook_base: str,
                    sample_limit: int = DEFAULT_SIZING.sample_limit) -> list[dict[str, Any]]:
    return [
        _page(
            "PopstreamWorkerDown", f'up{{job="{JOB}"}} == 0', timing.worker_down_for,
            "popstream worker {{ $labels.instance }} is down",
            "Prometheus cannot scrape the worker (stopped, crashed, unreachable, over "
            "its sample limit, or recovering for longer than a restart takes). Its "
            "partitions move to the other workers after the session timeout.",
            runbook_base),
        _page(
            "PopstreamProcessingStalled", STALLED_EXPR, timing.pipeline_for,
            "popstream worker {{ $labels.instance }} is not processing",
            "Messages wait on its partitions and it consumed none in 5 minutes, or it "
            "has not finished recovering, or no worker owns any partition.",
            runbook_base),
        _page(
            "PopstreamConsumerLagGrowing",
            "job:popstream_consumer_lag_messages:sum > 10000 and "
            "deriv(job:popstream_consumer_lag_messages:sum[10m]) > 0",
            timing.pipeline_for,
            "popstream is falling behind: {{ $value }} messages of lag and growing",
            "The workers consume slower than events arrive; seller metrics are late.",
            runbook_base),
        _page(
            "PopstreamDeadLetters",
            "sum by (job) (rate(popstream_events_invalid_total[5m])) > 0.1",
            timing.pipeline_for,
            "{{ $value | humanize }} invalid events/s go to the dead-letter topic",
            "A producer sends events the workers reject; their metrics miss them.",
            runbook_base),
        _page(
            "PopstreamPendingOrdersPilingUp",
            "job:popstream_pending_orders:sum > 10000 and "
            "deriv(job:popstream_pending_orders:sum[30m]) > 0",
            "30m",
            "{{ $value }} orders have events but no order event, and more every minute",
            "Events for orders the workers never saw an order event for.",
            runbook_base),
        # Over the limit Prometheus drops the whole scrape (up == 0, every series of the
        # worker stale) yet still records how many samples there were, so the limit the
        # scrape config was generated with tells which worker and by how much; in case
        # prometheus.yml is edited by hand, also Prometheus' own counter (it scrapes
        # itself) while a popstream target is down.
        _page(
            "PopstreamScrapeOverSampleLimit",
            f'scrape_samples_post_metric_relabeling{{job="{JOB}"}} > {sample_limit} '
            f'or (increase(prometheus_target_scrapes_exceeded_sample_limit_total'
            f'{{job="{SELF_JOB}"}}[5m]) > 0 and on () count(up{{job="{JOB}"}} == 0) > 0)',
            "1m",
            "A popstream scrape exceeds Prometheus' sample_limit ({{ $labels.instance }})",
            f"Prometheus refuses a worker's scrape over {sample_limit} samples: all its "
            "series are gone while it is over. More sellers in warning or breach than the "
            "limit was sized for, POPSTREAM_EXPORT=all on a large worker, or a watch list "
            "grown.",
            runbook_base),
    ]


def fleet_alerts(catalog: Catalog, timing: AlertTiming, fleet: FleetThresholds,
                 runbook_base: str) -> list[dict[str, Any]]:
    share = "metric:popstream_fleet_sellers_in_breach:ratio"
    rules = [
        _page(
            "PopstreamFleetBreachShareJump",
            f"{share} > {fleet.jump} * ({share} offset {fleet.jump_over}) "
            f"and {share} > {exact_decimal(fleet.min_share)} "
            f'and ignoring (status) metric:popstream_fleet_sellers:sum{{status="breach"}} '
            f">= {fleet.min_sellers}",
            timing.fleet_for,
            "{{ $value | humanizePercentage }} of sellers breach {{ $labels.metric }}, "
            f"over {fleet.jump}x the share {fleet.jump_over} ago",
            "Many sellers breaching at once is rarely the sellers: look for a platform "
            "cause (a carrier outage, a late-confirmation bug, a producer sending wrong "
            "events) before it reaches them.",
            runbook_base, timing.keep_firing_for),
    ]
    for metric in catalog.metrics:
        op = "<" if metric.healthy == "at_least" else ">="
        healthy, _, _ = _rule_text(metric)
        rules.append(_page(
            f"PopstreamFleet{_camel(metric.name)}PastTarget",
            f'metric:popstream_fleet_ratio:ratio{{metric="{metric.name}"}} {op} on (metric) '
            f'metric:popstream_metric_target_ratio:max{{metric="{metric.name}"}}',
            timing.fleet_for,
            f"Fleet-wide {metric.name} is {{{{ $value | humanizePercentage }}}} "
            f"(healthy {healthy})",
            "Over all sellers' orders the metric is past the target each seller is held "
            "to: a marketplace-wide problem, or the target is wrong.",
            runbook_base, timing.keep_firing_for, {"metric": metric.name}))
    return rules


def prometheus_rules(
    catalog: Catalog,
    timing: AlertTiming | None = None,
    fleet: FleetThresholds | None = None,
    runbook_base: str = RUNBOOK_BASE,
) -> dict[str, Any]:
    """The rules file as a document (dump it with YAML)."""
    timing = timing or AlertTiming()
    fleet = fleet or FleetThresholds()
    seller = [_seller_alert(m, status, timing, runbook_base)
              for m in catalog.metrics for status in ("breach", "warning")]
    return {
        "groups": [
            {"name": "popstream-recording", "rules": recording_rules()},
            {"name": "popstream-sellers", "rules": seller},
            {"name": "popstream-pipeline", "rules": pipeline_alerts(timing, runbook_base)},
            {"name": "popstream-fleet",
             "rules": fleet_alerts(catalog, timing, fleet, runbook_base)},
        ]
    }


def runbooks(catalog: Catalog, rules: dict[str, Any] | None = None) -> str:
    """runbooks.md: one section per alert (its anchor is the alert name, lower case),
    what it means and what to do."""
    doc = rules or prometheus_rules(catalog)
    steps = {
        "PopstreamWorkerDown": (
            "Read the worker's log (`popstream worker` exits with a code naming the cause: "
            "5 settings, 6 Kafka). `curl worker:6066/health` says `starting` while it "
            "recovers. Restart it; if it is over its sample limit, see "
            "PopstreamScrapeOverSampleLimit."),
        "PopstreamProcessingStalled": (
            "`/health` names the problem (`flush`: the broker refuses writes, consumption "
            "is paused). Look for a stuck rebalance or a broker problem in the log; a "
            "worker that never got partitions after minutes is stuck joining its group."),
        "PopstreamConsumerLagGrowing": (
            "Add workers (up to the number of partitions) or partitions; check that no "
            "worker is stalled."),
        "PopstreamDeadLetters": (
            "Read the dead-letter topic (header `popstream-reason`) and fix the producer."),
        "PopstreamPendingOrdersPilingUp": (
            "An order producer is missing or lagging: check the orders topic."),
        "PopstreamScrapeOverSampleLimit": (
            "Raise `sample_limit` for the popstream job (prometheus/prometheus.yml) or "
            "export fewer series per worker (`POPSTREAM_EXPORT=alerting`, a shorter watch "
            "list, more workers)."),
        "PopstreamFleetBreachShareJump": (
            "Compare the metric's numerator causes across sellers (Fleet health "
            "dashboard); check carriers, producers and recent deployments."),
    }
    lines = ["<!-- Generated by `popstream ops generate` from the metric catalog; "
             "do not edit. -->", "# popstream runbooks", ""]
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name, notes = rule["alert"], rule["annotations"]
            who = ("seller notification (not a page)" if rule["labels"]["severity"] == "seller"
                   else "page")
            lines += [f"## {name}", "", f"*{who}*: {notes['description']}", ""]
            action = notes.get("action") or steps.get(name) or (
                "Find which sellers drive the fleet ratio (Fleet health dashboard) and "
                "whether one cause (carrier, producer, deployment) explains them.")
            lines += [f"What to do: {action}", ""]
    return "\n".join(lines)


# --- Alertmanager ---------------------------------------------------------------


def alertmanager_config(webhook_url: str = "http://alert-sink:5001/") -> dict[str, Any]:
    """Sellers' alerts to sellers, everything else to the pager.

    Seller alerts are grouped by seller (one message lists a seller's metrics),
    held 5 minutes for its other metrics to join, and repeated once a day: a
    60-day window stays bad for weeks, and the seller needs a reminder, not a
    siren. Anything not marked ``severity: seller`` pages (an unknown alert is
    heard, not lost).

    Inhibition only among seller alerts: a seller's breach silences the same
    seller's warning on the same metric. Every matcher requires its label to be
    present (``=~".+"``): Alertmanager's ``equal`` counts a label absent on both
    alerts as equal, which let a worker-down page silence other pipeline pages.
    """
    base = webhook_url.rstrip("/")
    seller = ['severity="seller"', 'seller_id=~".+"', 'metric=~".+"']
    return {
        "route": {
            "receiver": PAGER_RECEIVER,
            "group_by": ["alertname"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"matchers": ['severity="seller"'], "receiver": SELLER_RECEIVER,
                 "group_by": ["seller_id"], "group_wait": "5m", "group_interval": "30m",
                 "repeat_interval": "24h"},
                {"matchers": ['severity="page"'], "receiver": PAGER_RECEIVER},
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": [*seller, 'seller_status="breach"'],
                "target_matchers": [*seller, 'seller_status="warning"'],
                "equal": ["seller_id", "metric"],
            }
        ],
        "receivers": [
            {"name": PAGER_RECEIVER, "webhook_configs": [
                {"url": base + "/pager", "send_resolved": True}]},
            {"name": SELLER_RECEIVER, "webhook_configs": [
                {"url": base + "/sellers", "send_resolved": True}]},
        ],
    }
