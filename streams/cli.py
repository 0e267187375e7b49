"""``popstream``: one entry point, one subcommand per job.

Exit codes mean something, so scripts can branch on them:

* 0: success (invalid lines were reported but tolerated)
* 2: bad command line (argparse)
* 3: invalid input under ``--strict``
* 4: an input file cannot be read
* 5: bad configuration (catalog, settings)
* 6: Kafka unreachable
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Final

import orjson

from streams import __version__
from streams.engine.catalog import Catalog, resolve_catalog
from streams.engine.engine import Engine, MetricValue
from streams.engine.events import US_PER_DAY, parse_timestamp
from streams.errors import BrokerUnavailable, ConfigError, InvalidEvent
from streams.settings import Settings, from_env

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_STRICT: Final = 3
EXIT_NOINPUT: Final = 4
EXIT_CONFIG: Final = 5
EXIT_BROKER: Final = 6
EXIT_NOT_FOUND: Final = 1


def _timestamp(text: str) -> int:
    try:
        return parse_timestamp(text)
    except InvalidEvent as exc:
        raise argparse.ArgumentTypeError(exc.reason) from None


def _catalog(spec: str | None) -> Catalog:
    return resolve_catalog(spec if spec is not None else os.environ.get("POPSTREAM_CATALOG"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="popstream",
        description=(
            "Real-time seller-performance monitoring: exact Perfect Order Percentage, "
            "Order Defect Rate, cancellation, late-shipment, refund and tracking "
            "rates per seller, from marketplace events."
        ),
        epilog="Exit codes: 0 ok, 2 usage, 3 invalid input under --strict, "
        "4 unreadable input, 5 bad configuration, 6 Kafka unreachable.",
    )
    parser.add_argument("--version", action="version", version=f"popstream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rp = sub.add_parser(
        "replay",
        help="compute metrics from a JSON Lines log, as of a fixed time",
        description=(
            "Read events (one JSON object per line, or a JSON array of events per line) "
            "and print every seller's metrics as of --as-of. Only events with "
            "occurred_at <= AS_OF count. Invalid lines are reported on stderr with "
            "their line number and reason and skipped (or fatal with --strict)."
        ),
        epilog=(
            "Example: popstream replay events.jsonl --as-of 2024-06-15T00:00:00Z "
            "--format json > metrics.json"
        ),
    )
    rp.add_argument("path", help="JSON Lines file, or - for standard input")
    rp.add_argument(
        "--as-of",
        type=_timestamp,
        required=True,
        metavar="T",
        help="RFC 3339 time with Z or an offset, e.g. 2024-06-15T00:00:00Z",
    )
    rp.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table: the worst sellers per metric (default); json: every seller, "
        'as {"as_of", "sellers": {SELLER: {METRIC: {numerator, denominator, value, '
        "target, breached, window_days}}}}",
    )
    rp.add_argument("--rejects", type=Path, metavar="FILE",
                    help="also write each invalid line as a JSON object to FILE")
    rp.add_argument("--strict", action="store_true",
                    help="stop at the first invalid line (exit code 3)")
    rp.add_argument("--catalog", metavar="NAME|TOML",
                    help="a profile (amazon, walmart, ebay; default amazon) or a catalog TOML file "
                         "(env POPSTREAM_CATALOG)")
    rp.add_argument("--top", type=int, default=10, metavar="N",
                    help="sellers per metric in the table format (default 10)")
    rp.add_argument("--quiet", action="store_true",
                    help="do not list invalid lines on stderr (the summary stays)")
    rp.add_argument("--explain", metavar="SELLER",
                    help="explain one seller instead: per metric the orders counting against "
                         "it (with causes and the day each leaves the window), headroom, "
                         "orders to recover and the recovery date (exit 1 if the seller "
                         "has no orders in any window)")
    rp.add_argument("--metric", metavar="M", help="with --explain: only this metric")
    rp.add_argument("--limit", type=int, metavar="N",
                    help="with --explain: at most N orders per metric (1..10000); the "
                         "numbers stay over all of them")
    rp.add_argument("--cursor", metavar="C",
                    help="with --explain: continue after a previous page's next_cursor")

    from streams.runtime.broker import add_cli as add_broker_cli

    add_broker_cli(sub)

    tp = sub.add_parser(
        "topics",
        help="create the event and dead-letter topics (idempotent)",
        description="Create the nine event topics and the dead-letter topic with "
        "POPSTREAM_PARTITIONS partitions; report the ones that already exist.",
    )
    tp.add_argument("action", choices=("create",))
    _kafka_args(tp)

    pp = sub.add_parser(
        "produce",
        help="publish a JSON Lines log to the event topics",
        description="Validate each line and publish it to its type's topic, keyed by "
        "seller_id, with an idempotent producer. A line may hold one event or a JSON "
        "array of events: an array of one seller and one type goes as one message, "
        "any other array event by event. Invalid lines and elements (LINE[i]) are "
        "reported, not sent. Standard input is sent line by line as it arrives: "
        "tail -f events.jsonl | popstream produce -",
    )
    pp.add_argument("path", help="JSON Lines file, or - for standard input")
    _kafka_args(pp)

    wp = sub.add_parser(
        "worker",
        help="run the Kafka worker (Faust): metrics on /metrics and /api/sellers",
        description="Consume the event topics, keep every owned seller's metrics, "
        "persist state to a changelog, and serve /metrics and /api/sellers. "
        "SIGTERM or Ctrl-C stops it gracefully.",
    )
    _kafka_args(wp)
    wp.add_argument("--as-of", type=_timestamp, metavar="T",
                    help="a fixed clock: compute metrics as of T (backfills, tests)")
    wp.add_argument("--web-port", type=int, help="port of /metrics and /api (default 6066)")
    wp.add_argument("--store", help="memory:// or rocksdb:// (default memory://)")
    wp.add_argument("--data-dir", type=Path, help="worker data directory")
    wp.add_argument("--catalog", metavar="NAME|TOML",
                    help="a profile (amazon, walmart, ebay) or a catalog TOML file")
    wp.add_argument("--loglevel", default="warning",
                    choices=("debug", "info", "warning", "error"))

    sp = sub.add_parser(
        "simulate",
        help="publish realistic live traffic (a backfill, then events/s)",
        description="Publish a backfill of recent history, then live traffic at --rate "
        "events/s for --duration seconds (default: until Ctrl-C). A share of sellers "
        "drifts from healthy to breaching over --drift-minutes.",
    )
    _kafka_args(sp)
    sp.add_argument("--sellers", type=int, default=50)
    sp.add_argument("--rate", type=float, default=200.0, help="live events per second")
    sp.add_argument("--duration", type=float, default=None, help="seconds of live traffic")
    sp.add_argument("--history-days", type=int, default=30)
    sp.add_argument("--drifting-share", type=float, default=0.1)
    sp.add_argument("--drift-minutes", type=float, default=5.0)
    sp.add_argument("--seed", type=int, default=7)

    dp = sub.add_parser(
        "demo",
        help="the whole pipeline with a live view of the worst sellers",
        description="Start an embedded Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set), "
        "create topics, run a worker and the simulator, and show the worst sellers per "
        "metric live. Ctrl-C stops everything it started.",
    )
    dp.add_argument("--sellers", type=int, default=40)
    dp.add_argument("--catalog", metavar="NAME|TOML",
                    help="a profile (amazon, walmart, ebay; default amazon) or a catalog TOML "
                    "file: the standards the demo computes and shows")
    dp.add_argument("--rate", type=float, default=300.0)
    dp.add_argument("--duration", type=float, default=None)
    dp.add_argument("--web-port", type=int, default=6066)

    op = sub.add_parser(
        "ops",
        help="regenerate Prometheus rules, Alertmanager config and Grafana dashboards",
        description="Write prometheus/rules/popstream.rules.yml, prometheus/alertmanager.yml "
        "and grafana/dashboards/*.json from the metric catalog (--catalog to customise).",
    )
    op.add_argument("action", choices=("generate",))
    op.add_argument("--root", type=Path, default=Path("."))
    op.add_argument("--catalog", metavar="NAME|TOML")

    gp = sub.add_parser(
        "generate",
        help="write a realistic synthetic event log (JSON Lines)",
        description=(
            "Generate a deterministic log: orders purchased over DAYS days ending at "
            "--end, with shipments, carrier deliveries, cancellations, refunds, returns, "
            "feedback, claims (A-to-z, chargeback, item not received), buyer messages and "
            "seller replies; a share of sellers drifts toward breaching its targets."
        ),
    )
    gp.add_argument("output", help="output file, or - for standard output")
    gp.add_argument("--sellers", type=int, default=100)
    gp.add_argument("--orders-per-seller-per-day", type=float, default=2.0)
    gp.add_argument("--days", type=int, default=95)
    gp.add_argument("--end", type=_timestamp, default=None, metavar="T",
                    help="last purchase time (default: today 00:00 UTC)")
    gp.add_argument("--drifting-share", type=float, default=0.1)
    gp.add_argument("--seed", type=int, default=1)
    return parser


def _kafka_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", metavar="HOST:PORT",
                        help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092); "
                        "SASL/TLS settings come from the environment only")
    parser.add_argument("--topic-prefix", help="prefix of every topic name")
    parser.add_argument("--partitions", type=int, help="partitions of created topics")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return from_env(
        None,
        bootstrap_servers=args.bootstrap_servers,
        topic_prefix=args.topic_prefix,
        partitions=args.partitions,
        **extra,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("topics", "produce", "simulate"):
        from streams.logs import setup_logging

        # Kafka clients' logs as logfmt lines, rate-limited: a produce caught
        # mid-send by a broker restart logged 232k lines in 27 s before.
        setup_logging("warning")
    try:
        if args.command == "replay":
            return _cmd_replay(args)
        if args.command == "generate":
            return _cmd_generate(args)
        if args.command == "topics":
            return _cmd_topics(args)
        if args.command == "produce":
            return _cmd_produce(args)
        if args.command == "worker":
            return _cmd_worker(args)
        if args.command == "simulate":
            return _cmd_simulate(args)
        if args.command == "demo":
            from streams.demo import run_demo

            return run_demo(args.sellers, args.rate, args.duration, args.web_port,
                            args.catalog)
        if args.command == "ops":
            from streams.observability import generate

            for path in generate(args.root, _catalog(args.catalog)):
                print(f"popstream: wrote {path}")
            return EXIT_OK
        if args.command == "broker":
            from streams.runtime.broker import run_cli

            return run_cli(args)
    except ConfigError as exc:
        print(f"popstream: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokerUnavailable as exc:
        print(f"popstream: {exc}", file=sys.stderr)
        return EXIT_BROKER
    raise AssertionError(f"unhandled command {args.command!r}")


def _cmd_worker(args: argparse.Namespace) -> int:
    """Settings, then the pre-flight checks (one line and exit 5 or 6 for what
    would otherwise be a Faust traceback), then Faust."""
    from streams.logs import setup_logging
    from streams.runtime.faust_options import scrub_faust_environment

    scrub_faust_environment()  # before anything imports faust
    settings = _settings(args, as_of=args.as_of, web_port=args.web_port,
                         store=args.store, data_dir=args.data_dir,
                         catalog_path=args.catalog)
    setup_logging(args.loglevel)
    _catalog(settings.catalog_path)  # a bad catalog is exit 5 here, not a traceback later

    from streams.runtime.preflight import preflight

    preflight(settings)
    from streams.runtime.worker import run_worker

    return run_worker(settings, loglevel=args.loglevel)


def _cmd_replay(args: argparse.Namespace) -> int:
    from streams.replay import Progress, Reject, StrictModeViolation, read_lines, replay

    catalog = _catalog(args.catalog)
    if args.explain is None and (args.metric, args.limit, args.cursor) != (None, None, None):
        print("popstream replay: --metric, --limit and --cursor go with --explain",
              file=sys.stderr)
        return EXIT_USAGE
    names = [m.name for m in catalog.metrics]
    if args.metric is not None and args.metric not in names:
        print(f"popstream replay: --metric must be one of {names}, got {args.metric!r}",
              file=sys.stderr)
        return EXIT_USAGE
    if args.limit is not None and not 1 <= args.limit <= 10_000:
        print(f"popstream replay: --limit must be 1..10000, got {args.limit}", file=sys.stderr)
        return EXIT_USAGE
    stream: IO[bytes]
    total: int | None
    if args.path == "-":
        stream, total = sys.stdin.buffer, None
    else:
        try:
            stream = open(args.path, "rb")  # noqa: SIM115 - closed below
            total = os.fstat(stream.fileno()).st_size
        except OSError as exc:
            print(f"popstream: cannot read {args.path}: {exc.strerror}", file=sys.stderr)
            return EXIT_NOINPUT
    rejects_out = open(args.rejects, "wb") if args.rejects else None  # noqa: SIM115
    shown = 0

    def on_reject(item: Reject) -> None:
        nonlocal shown
        if rejects_out is not None:
            rejects_out.write(item.to_json() + b"\n")
        if not args.quiet and shown < 1000:
            shown += 1
            print(f"popstream: {item}", file=sys.stderr)
            if shown == 1000:
                print("popstream: (further invalid lines not listed)", file=sys.stderr)

    progress = Progress(total, f"replay {args.path}")
    try:
        result = replay(
            read_lines(stream, progress.update),
            args.as_of,
            catalog=catalog,
            strict=args.strict,
            on_reject=on_reject,
        )
    except StrictModeViolation as exc:
        progress.close()
        print(f"popstream: --strict: {exc}", file=sys.stderr)
        return EXIT_STRICT
    finally:
        progress.close()
        if stream is not sys.stdin.buffer:
            stream.close()
        if rejects_out is not None:
            rejects_out.close()
    print(result.summary(), file=sys.stderr)
    if args.explain is not None:
        return _explain(result.engine, args)
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(result.report(), option=orjson.OPT_SORT_KEYS))
        sys.stdout.buffer.write(b"\n")
    else:
        _print_table(result.engine.report(), catalog, args.top, args.as_of)
    return EXIT_OK


def _explain(engine: Engine, args: argparse.Namespace) -> int:
    from streams.engine.events import format_us
    from streams.engine.explain import BadCursor, explain_seller

    try:
        doc = explain_seller(engine, args.explain, metric=args.metric, limit=args.limit,
                             cursor=args.cursor)
    except BadCursor as exc:
        print(f"popstream replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if doc is None:
        print(f"popstream replay: seller {args.explain!r} has no orders in any window as of "
              f"{format_us(args.as_of)}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
        return EXIT_OK
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.print(f"[bold]{escape(doc['seller_id'])}[/] as of {doc['as_of']}")
    for name, m in doc["metrics"].items():
        value = "—" if m["value"] is None else f"{m['value']:.4%}"
        if m["breached"]:
            outlook = (f"{m['orders_to_recover'] if m['orders_to_recover'] is not None else '—'}"
                       f" good orders to recover; recovers on {m['recovers_on']}")
        else:
            outlook = f"headroom {'—' if m['headroom'] is None else m['headroom']} orders"
        console.print(f"\n[bold]{name}[/] {m['numerator']}/{m['denominator']} = {value} "
                      f"(target {m['target']:g}, {m['status']}); {outlook}")
        for entry in m["orders"]:
            ident = entry.get("order_id", entry.get("message_id"))
            when = entry.get("purchased_at", entry.get("sent_at"))
            console.print(f"  {escape(str(ident))}  {when}  {', '.join(entry['causes'])}  "
                          f"leaves {entry['leaves_window_on']}", highlight=False)
        if m["next_cursor"]:
            console.print(f"  … more: --cursor {m['next_cursor']}")
    return EXIT_OK


def _print_table(
    report: dict[str, dict[str, MetricValue]], catalog: Catalog, top: int, as_of: int
) -> None:
    from rich.console import Console
    from rich.table import Table

    from streams.engine.events import format_us
    from streams.replay import worst_sellers

    console = Console()
    console.print(f"[bold]Seller health as of {format_us(as_of)}[/] — {len(report)} sellers")
    for metric in catalog.metrics:
        rows = worst_sellers(report, catalog, top)[metric.name]
        breached = sum(1 for ms in report.values() if ms[metric.name].breached)
        op = ">=" if metric.healthy == "at_least" else "<"
        table = Table(
            title=f"{metric.name}: {breached} in breach",
            caption=f"{metric.window_days}-day window, healthy {op} {metric.target:g}",
            title_justify="left",
            caption_justify="left",
        )
        for col in ("seller", "value", "numerator", "denominator", "status"):
            table.add_column(col, justify="left" if col == "seller" else "right")
        for seller, mv in rows:
            status = "[red]BREACH[/]" if mv.breached else "[green]ok[/]"
            table.add_row(seller, f"{(mv.value or 0.0):.4f}", str(mv.numerator),
                          str(mv.denominator), status)
        console.print(table)


def _cmd_topics(args: argparse.Namespace) -> int:
    import asyncio

    from streams.runtime.topics import create_topics

    settings = _settings(args)
    report = asyncio.run(create_topics(settings))
    for line in report.lines():
        print(f"popstream: {line}")
    return EXIT_OK


def _cmd_produce(args: argparse.Namespace) -> int:
    import asyncio

    from streams.replay import Progress
    from streams.runtime.producer import produce_lines, stream_lines

    settings = _settings(args)
    stream: IO[bytes]
    if args.path == "-":
        stream, total = sys.stdin.buffer, None
    else:
        try:
            stream = open(args.path, "rb")  # noqa: SIM115
        except OSError as exc:
            print(f"popstream: cannot read {args.path}: {exc.strerror}", file=sys.stderr)
            return EXIT_NOINPUT
        total = os.fstat(stream.fileno()).st_size
    progress = Progress(total, f"produce {args.path}")
    try:
        report = asyncio.run(produce_lines(settings, stream_lines(stream, progress.update)))
    except OSError as exc:
        print(f"popstream: cannot read {args.path}: {exc}", file=sys.stderr)
        return EXIT_NOINPUT
    finally:
        progress.close()
        if stream is not sys.stdin.buffer:
            stream.close()
    for where, error in report.rejected[:1000]:
        print(f"popstream: line {where}: {error}", file=sys.stderr)
    for reason in report.errors:
        print(f"popstream: delivery failed: {reason}", file=sys.stderr)
    failed = f", {report.failed} failed delivery" if report.failed else ""
    print(f"popstream: sent {report.sent} events in {report.messages} messages{failed}, "
          f"{len(report.rejected)} invalid lines or elements not sent", file=sys.stderr)
    return EXIT_BROKER if report.failed else EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio

    from streams.simulate import SimulationSpec, SimulationStats, simulate

    settings = _settings(args)
    spec = SimulationSpec(sellers=args.sellers, rate=args.rate, duration=args.duration,
                          history_days=args.history_days,
                          drifting_share=args.drifting_share,
                          drift_minutes=args.drift_minutes, seed=args.seed)
    last = [0.0]

    def progress(stats: SimulationStats) -> None:
        import time

        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            print(f"popstream: sent {stats.backfilled} backfill + {stats.live} live events",
                  file=sys.stderr, flush=True)

    try:
        stats = asyncio.run(simulate(settings, spec, progress))
    except KeyboardInterrupt:
        return EXIT_OK
    print(f"popstream: sent {stats.backfilled} backfill + {stats.live} live events",
          file=sys.stderr)
    return EXIT_OK


def _cmd_generate(args: argparse.Namespace) -> int:
    import time

    from streams.generator import LogSpec, generate

    end = args.end
    if end is None:
        end = int(time.time() * 1_000_000) // US_PER_DAY * US_PER_DAY
    spec = LogSpec(
        sellers=args.sellers,
        orders_per_seller_per_day=args.orders_per_seller_per_day,
        days=args.days,
        end_us=end,
        drifting_share=args.drifting_share,
        seed=args.seed,
    )
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    count = 0
    try:
        for event in generate(spec):
            out.write(orjson.dumps(event) + b"\n")
            count += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    print(f"popstream: wrote {count} events for {spec.sellers} sellers", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
