"""The Prometheus server's config (``prometheus/prometheus.yml``), generated so that
how a worker is scraped is written down once, next to the arithmetic behind it.

What a worker exports, per scrape (the export contract, ``docs/status-contract.md``):

* **fixed**, whatever the number of sellers: fleet series (per metric: 4 statuses,
  a histogram of sellers' values with ~14 buckets, ``_count`` and ``_sum``, numerator
  and denominator sums: 130 for the 6 default metrics), catalog series (5 per
  metric: 30), pipeline series (counters with their ``_created`` twins, the latency
  histogram: ~80 on a ``Pipeline`` fed every event type, ~200 once every outcome and
  dead-letter reason has occurred), plus one lag series per event topic and owned
  partition (7 per partition). 241 measured without lag; under
  :data:`FIXED_SAMPLES` up to 64 partitions on one worker.
* **per exported seller**: at most the default profile's 8 metrics x (ratio,
  numerator, denominator, status, headroom) plus up to 7 imperfect-order causes:
  :data:`SAMPLES_PER_SELLER` (47; a seller exported because it alerts has only its
  alerting metrics: 8.7 on average in ``make bench-scale`` before the headroom
  series, which adds one for each metric in warning). With the default
  export mode only sellers in ``warning`` or ``breach`` (and the watch list) are
  exported, a few per cent of the sellers that have enough orders to be judged.

**sample_limit = 200,000** per worker target: the fixed part plus
``(200,000 - 1,000) / 47`` = 4,234 exported sellers with every metric and cause
present (1.7 % of a worker holding 250,000 sellers; ~22,800 at the measured 8.7
series each). It is a ceiling, not a budget: a worker in
``POPSTREAM_EXPORT=all`` mode with 100,000 sellers (1.9M series) is refused rather
than allowed to take a Prometheus that holds ~10M series down with it, and 16
workers at the limit are still 3.2M series on one server. The price: Prometheus
drops the *whole* scrape of a target over the limit (``up`` = 0 for that worker,
every series it exported goes stale), so exceeding it must page — see
``prometheus_target_scrapes_exceeded_sample_limit_total`` (this file scrapes
Prometheus itself so that the counter exists) and ``docs/sharding.md`` for what to
do instead (another worker, another Prometheus shard, or remote_write).

**body_size_limit = 64MB**: ``sample_limit`` is counted while parsing, after the
whole body is read into Prometheus's memory; a worker in ``all`` mode at 1M sellers
sends 1.62 GB. The longest sample line a worker writes is 177 bytes (a 64-character
seller id, the longest the schema allows, in a ``status`` series), so a body at the
sample limit is under 36 MB and the sample limit, the clearer message, trips first.

**scrape_interval = 15s**: seller windows move in days and seller alerts hold for
minutes, so finer resolution buys nothing there; the pipeline's ``rate(...[1m])``
panels and the one-minute ``WorkerDown`` hold need 4 samples a minute to survive a
missed scrape, so coarser would blur them.

**scrape_timeout = 10s**: a default-mode scrape is meant to take < 1 s (issue #11;
today 1.38 s for 100,000 sellers in ``all`` mode with every seller changed), so 10 s
is headroom for a 2-core worker also consuming or recovering — a timed-out scrape
counts as a dead worker and pages — while staying under the interval, so a slow
scrape has ended before the next one starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from streams.engine.catalog import default_catalog
from streams.engine.rules import CAUSE_NAMES

JOB: Final = "popstream"
"""The scrape job of the workers; the alert rules select ``job="popstream"``."""

SELF_JOB: Final = "prometheus"
"""Prometheus scraping itself: its ``prometheus_target_scrapes_exceeded_*`` counters."""

FIXED_SAMPLES: Final = 1_000
"""Fleet, catalog and pipeline samples of one worker (see the module docstring)."""

SAMPLES_PER_SELLER: Final = len(default_catalog().metrics) * 5 + len(CAUSE_NAMES)
"""Per exported seller at most: the default profile's metrics (8) x (ratio,
numerator, denominator, status, headroom), and 7 causes: 47."""

EXAMPLE_REMOTE_WRITE: Final = "http://victoriametrics:8428/api/v1/write"


@dataclass(frozen=True, slots=True)
class ScrapeSizing:
    """How one worker target is scraped (the reasons are in the module docstring)."""

    interval: str = "15s"
    timeout: str = "10s"
    sample_limit: int = 200_000
    body_size_limit: str = "64MB"

    def __post_init__(self) -> None:
        if self.sample_limit <= FIXED_SAMPLES:
            raise ValueError(
                f"sample_limit must exceed the {FIXED_SAMPLES} fixed samples of a worker, "
                f"got {self.sample_limit}"
            )

    @property
    def exported_sellers(self) -> int:
        """Sellers a worker may export, all causes present, before its scrape is refused."""
        return (self.sample_limit - FIXED_SAMPLES) // SAMPLES_PER_SELLER


DEFAULT_SIZING: Final = ScrapeSizing()


@dataclass(frozen=True, slots=True)
class Shard:
    """This server scrapes the workers whose address hashes to ``index`` of ``count``
    (``hashmod`` relabeling: every shard lists every worker and keeps its share)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in [0, {self.count}), got {self.index}")

    def relabel_configs(self) -> list[dict[str, Any]]:
        return [
            {"source_labels": ["__address__"], "modulus": self.count,
             "target_label": "__tmp_shard", "action": "hashmod"},
            {"source_labels": ["__tmp_shard"], "regex": str(self.index), "action": "keep"},
        ]


def remote_write_entry(url: str) -> dict[str, Any]:
    """One ``remote_write`` target. Prometheus's queue defaults suit a few hundred
    thousand samples per scrape; only the batch is raised, since every receiver we
    name (VictoriaMetrics, Mimir, Thanos Receive) takes 10,000 samples per request."""
    return {"url": url, "queue_config": {"max_samples_per_send": 10_000}}


PAGE_LABEL: Final = "popstream_url"
"""Target label: where a browser reaches the worker's seller pages (the Grafana seller
dashboard links there; a scrape address like ``worker-1:6066`` is often not)."""

COMPOSE_PAGES: Final[dict[str, str]] = {"worker-1:6066": "http://localhost:6066",
                                        "worker-2:6066": "http://localhost:6067"}
"""docker-compose.yml publishes the workers' ports on the host."""


def prometheus_config(
    targets: Sequence[str] = ("worker-1:6066", "worker-2:6066"),
    *,
    page_urls: Mapping[str, str] = COMPOSE_PAGES,
    sizing: ScrapeSizing = DEFAULT_SIZING,
    evaluation_interval: str = "15s",
    rule_files: Sequence[str] = ("/etc/prometheus/rules/*.yml",),
    alertmanagers: Sequence[str] = ("alertmanager:9093",),
    self_target: str = "localhost:9090",
    remote_write: Sequence[str] = (),
    shard: Shard | None = None,
) -> dict[str, Any]:
    """The config document (dump it with YAML). The defaults are docker-compose's
    services; tests pass loopback addresses and a faster ``sizing``.

    With ``shard``, the server scrapes only its share of ``targets`` and labels what
    it stores and writes with ``popstream_shard``; the label is dropped from alerts,
    so a seller exported by two workers of different shards during a rebalance is
    one alert in Alertmanager, not two (docs/sharding.md)."""
    doc: dict[str, Any] = {
        "global": {
            "scrape_interval": sizing.interval,
            "scrape_timeout": sizing.timeout,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": list(rule_files),
    }
    if shard is not None:
        doc["global"]["external_labels"] = {"popstream_shard": str(shard.index)}
    if alertmanagers:
        doc["alerting"] = {"alertmanagers": [{"static_configs": [
            {"targets": list(alertmanagers)}]}]}
        if shard is not None:
            doc["alerting"]["alert_relabel_configs"] = [
                {"regex": "popstream_shard", "action": "labeldrop"}]
    workers: dict[str, Any] = {
        "job_name": JOB,
        "scrape_interval": sizing.interval,
        "scrape_timeout": sizing.timeout,
        "sample_limit": sizing.sample_limit,
        "body_size_limit": sizing.body_size_limit,
        "static_configs": _static_configs(targets, page_urls),
    }
    if shard is not None:
        workers["relabel_configs"] = shard.relabel_configs()
    doc["scrape_configs"] = [
        workers,
        {"job_name": SELF_JOB, "static_configs": [{"targets": [self_target]}]},
    ]
    if remote_write:
        doc["remote_write"] = [remote_write_entry(url) for url in remote_write]
    return doc


def _static_configs(targets: Sequence[str], page_urls: Mapping[str, str]
                    ) -> list[dict[str, Any]]:
    """One group for the targets without a page URL, one per target with one (its
    ``popstream_url`` label: the seller dashboard's link to the seller page)."""
    plain = [t for t in targets if t not in page_urls]
    groups: list[dict[str, Any]] = [{"targets": plain}] if plain else []
    groups += [{"targets": [t], "labels": {PAGE_LABEL: page_urls[t]}}
               for t in targets if t in page_urls]
    return groups


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, width=100)


def prometheus_yml() -> str:
    """The committed ``prometheus/prometheus.yml`` (without the generated-file header):
    docker-compose's config, and a commented ``remote_write`` to uncomment."""
    example = _dump({"remote_write": [remote_write_entry(EXAMPLE_REMOTE_WRITE)]})
    return (
        "# Prometheus for docker-compose.yml: scrapes both workers and itself, loads the\n"
        "# generated rules. sample_limit, body_size_limit, scrape_interval and\n"
        "# scrape_timeout are sized in streams/observability/prometheus_config.py.\n"
        + _dump(prometheus_config())
        + "\n# Beyond one Prometheus (docs/sharding.md): uncomment to also send every sample\n"
        "# to VictoriaMetrics (Debian's victoria-metrics; Mimir and Thanos Receive take\n"
        "# the same protocol) for long-term and cross-shard queries.\n"
        + "".join(f"# {line}\n" for line in example.splitlines())
    )
