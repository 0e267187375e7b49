"""The generated Prometheus config: the scrape sizing holds together, and the series
arithmetic behind ``sample_limit`` matches what a real ``Pipeline`` exports."""

from __future__ import annotations

import re
from collections import Counter

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streams.engine.catalog import default_catalog
from streams.engine.events import parse_timestamp
from streams.engine.rules import CAUSE_NAMES
from streams.generator import LogSpec, generate
from streams.observability import rendered_files
from streams.observability.prometheus_config import (
    DEFAULT_SIZING,
    EXAMPLE_REMOTE_WRITE,
    FIXED_SAMPLES,
    JOB,
    SAMPLES_PER_SELLER,
    SELF_JOB,
    ScrapeSizing,
    Shard,
    prometheus_config,
)
from streams.runtime.pipeline import Pipeline
from streams.runtime.topics import TopicNames, owner_partition
from streams.settings import from_env

pytestmark = pytest.mark.unit
AS_OF = "2024-06-15T00:00:00Z"
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
SIZES = {"KB": 2**10, "MB": 2**20, "GB": 2**30}
LAG_SERIES_PER_PARTITION = 7  # one per event topic
MAX_PARTITIONS_PER_WORKER = 64
LONGEST_SELLER_ID = 64  # the envelope schema's maxLength


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert match, duration
    return int(match[1]) * UNITS[match[2]]


def size(limit: str) -> int:
    match = re.fullmatch(r"(\d+)(KB|MB|GB)", limit)
    assert match, limit
    return int(match[1]) * SIZES[match[2]]


def test_committed_file_is_the_default_config_with_a_commented_remote_write() -> None:
    text = rendered_files()["prometheus/prometheus.yml"]
    assert yaml.safe_load(text) == prometheus_config()
    lines = text.splitlines()
    start = lines.index("# remote_write:")
    commented = "\n".join(line.removeprefix("# ") for line in lines[start:])
    example = yaml.safe_load(commented)
    assert example == {"remote_write": prometheus_config(
        remote_write=[EXAMPLE_REMOTE_WRITE])["remote_write"]}


def test_workers_are_scraped_with_the_sizing_and_prometheus_scrapes_itself() -> None:
    doc = prometheus_config()
    job, own = doc["scrape_configs"]
    assert job["job_name"] == JOB == "popstream"  # what the alert rules select
    assert job["static_configs"] == [
        {"targets": ["worker-1:6066"], "labels": {"popstream_url": "http://localhost:6066"}},
        {"targets": ["worker-2:6066"], "labels": {"popstream_url": "http://localhost:6067"}}]
    assert prometheus_config(["a:1", "b:2"], page_urls={"b:2": "http://b"})[
        "scrape_configs"][0]["static_configs"] == [
        {"targets": ["a:1"]}, {"targets": ["b:2"], "labels": {"popstream_url": "http://b"}}]
    assert job["sample_limit"] == DEFAULT_SIZING.sample_limit == 200_000
    # The sample-limit counter is Prometheus's own metric: without this job it has
    # no series and an alert on it can never fire.
    assert own == {"job_name": SELF_JOB, "static_configs": [{"targets": ["localhost:9090"]}]}
    assert "remote_write" not in doc


def test_a_slow_scrape_ends_before_the_next_and_rates_get_four_samples_a_minute() -> None:
    interval, timeout = seconds(DEFAULT_SIZING.interval), seconds(DEFAULT_SIZING.timeout)
    assert timeout < interval
    assert 60 / interval >= 4
    assert timeout >= 5 * 1.38  # today's slowest measured scrape (README), 5x


def test_the_body_limit_never_trips_before_the_sample_limit() -> None:
    line = (f'popstream_seller_metric_status{{seller_id="{"x" * LONGEST_SELLER_ID}",'
            'metric="pre_fulfillment_cancel_rate",status="insufficient_volume"} 1\n')
    body_at_limit = DEFAULT_SIZING.sample_limit * len(line)
    assert body_at_limit < size(DEFAULT_SIZING.body_size_limit)
    assert size(DEFAULT_SIZING.body_size_limit) < 1_620_000_000 // 10  # 1M sellers, all mode


def test_the_sample_limit_leaves_room_for_thousands_of_exported_sellers() -> None:
    assert len(default_catalog().metrics) * 5 + len(CAUSE_NAMES) == SAMPLES_PER_SELLER
    assert DEFAULT_SIZING.exported_sellers == (200_000 - 1_000) // 47 == 4_234
    with pytest.raises(ValueError, match="must exceed the 1000 fixed samples"):
        ScrapeSizing(sample_limit=FIXED_SAMPLES)


def test_remote_write_targets_are_added() -> None:
    doc = prometheus_config(remote_write=["http://127.0.0.1:8428/api/v1/write"])
    assert [w["url"] for w in doc["remote_write"]] == ["http://127.0.0.1:8428/api/v1/write"]


def test_a_shard_keeps_its_hash_share_labels_its_data_and_not_its_alerts() -> None:
    doc = prometheus_config(["w0:6066", "w1:6066"], shard=Shard(2, 3))
    assert doc["global"]["external_labels"] == {"popstream_shard": "2"}
    assert doc["scrape_configs"][0]["relabel_configs"] == [
        {"source_labels": ["__address__"], "modulus": 3, "target_label": "__tmp_shard",
         "action": "hashmod"},
        {"source_labels": ["__tmp_shard"], "regex": "2", "action": "keep"},
    ]
    assert doc["alerting"]["alert_relabel_configs"] == [
        {"regex": "popstream_shard", "action": "labeldrop"}]
    assert "relabel_configs" not in doc["scrape_configs"][1]  # each shard scrapes itself
    with pytest.raises(ValueError, match=r"shard index must be in \[0, 3\), got 3"):
        Shard(3, 3)


def test_the_series_arithmetic_matches_a_real_pipeline() -> None:
    """A pipeline fed every event type, exporting every seller: per seller at most
    SAMPLES_PER_SELLER samples, and the rest (fleet, catalog, pipeline) with the lag
    series of 64 partitions within FIXED_SAMPLES."""
    as_of = parse_timestamp(AS_OF)
    p = Pipeline(from_env({"POPSTREAM_EXPORT": "all"}, as_of=as_of), default_catalog())
    p.ready = True
    names = TopicNames("")
    for offset, event in enumerate(generate(LogSpec(sellers=30, days=95, end_us=as_of))):
        seller = event["seller_id"]
        assert p.handle(orjson.dumps(event), names.for_type(event["type"]),
                        owner_partition(seller, 4), offset, None, seller.encode()) == []
    p.handle(b"{not json", names.for_type("order"), 0, 0, None)  # a dead-letter reason
    per_seller: Counter[str] = Counter()
    fixed = 0
    for family in text_string_to_metric_families(p.render_metrics().decode()):
        for sample in family.samples:
            if "seller_id" in sample.labels:
                per_seller[sample.labels["seller_id"]] += 1
            else:
                fixed += 1
    assert len(per_seller) == 30
    assert max(per_seller.values()) <= SAMPLES_PER_SELLER
    lag = LAG_SERIES_PER_PARTITION * MAX_PARTITIONS_PER_WORKER
    assert fixed + lag <= FIXED_SAMPLES, (fixed, lag)
