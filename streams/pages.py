"""The worker's HTML pages (issue #13): ``/sellers`` and ``/sellers/{id}``.

Pure rendering, no I/O: the routes fetch the explain document (see the explain
contract) or the list of sellers in warning or breach and hand it here. The pages
are plain, self-contained HTML: inline ``<style>``, inline SVG charts, no script,
no font, no image and no URL outside the worker (except a link to Grafana when the
operator configures one), because operators open them where the worker runs, often
without internet access.

Every string that comes from data (seller ids, order and message ids, cursors,
metric names) is escaped with :func:`html.escape`, and path segments are
percent-quoted: seller and order ids are whatever producers sent, so hostile.

Machine-readable hooks, for the browser tests (``tests/browser.py`` reads them):

* a metric section is ``<section class="metric" id="m-NAME" data-metric="NAME">``;
  on ``/sellers`` a row is ``<tr data-seller-id="ID">`` and a cell
  ``<td data-metric="NAME" data-status="STATUS">``;
* ``data-field="F"``: the element shows the document's field ``F``; its *figure* is
  its ``data-value`` attribute when it has one (``repr`` of a float: ``value``,
  ``target``; the cursor of ``next_cursor``), else its text, which is then exactly
  the document's integer or string, ``—`` for null (a null ``value`` has no
  ``data-value``);
* order rows are ``<tr class="order" data-row="I">`` whose cells carry the entry's
  keys as ``data-field`` (``causes``: the causes joined by ``", "``);
* chart days are ``<g class="day" data-date=.. data-denominator=.. data-bad=..>``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from streams.engine.catalog import STATUSES, Catalog, Metric

NULL: Final = "—"
"""What a null figure shows as (headroom of a breached metric, a value without orders)."""

# Worst first: the order of a status when sorting sellers, and the colour of each.
_STATUS_RANK: Final[dict[str, int]] = {"breach": 0, "warning": 1, "healthy": 2,
                                      "insufficient_volume": 3}

_STYLE: Final = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1d232a; background: #f6f7f9; margin: 0; }
.page { max-width: 1240px; margin: 0 auto; padding: 16px 20px 40px; }
nav { display: flex; gap: 18px; margin-bottom: 8px; }
a { color: #0b5cad; }
h1 { font-size: 22px; margin: 4px 0 2px; overflow-wrap: anywhere; }
h2 { font-size: 18px; margin: 0 0 8px; display: flex; gap: 10px; align-items: center;
     flex-wrap: wrap; }
h3 { font-size: 14px; margin: 14px 0 6px; }
.sub { color: #56606b; margin: 0 0 14px; }
.mono, code, td.id { font-family: ui-monospace, "DejaVu Sans Mono", monospace;
                     font-size: 13px; overflow-wrap: anywhere; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #d9dde2; padding: 4px 8px; text-align: left;
         vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px;
          font-size: 12px; font-weight: 600; white-space: nowrap; }
.s-healthy { background: #dff3e4; color: #14632c; }
.s-warning { background: #fff0c2; color: #7a4a00; }
.s-breach { background: #fddcdb; color: #9b1c1c; }
.s-insufficient_volume, .s-unknown { background: #e8ecef; color: #45525c; }
td.s-healthy, td.s-warning, td.s-breach, td.s-insufficient_volume { color: inherit; }
section.metric { background: #fff; color: #1d232a; border: 1px solid #d9dde2;
                 border-left-width: 6px; border-radius: 4px; padding: 12px 16px;
                 margin: 16px 0; }
section.metric.s-breach { border-left-color: #c62828; }
section.metric.s-warning { border-left-color: #e0a100; }
section.metric.s-healthy { border-left-color: #2e7d32; }
section.metric.s-insufficient_volume { border-left-color: #90a4ae; }
.description { color: #56606b; margin: 0 0 10px; }
dl.figures { display: grid; grid-template-columns: repeat(5, minmax(0, 1fr));
             gap: 8px 16px; margin: 0 0 10px; }
dl.figures div { background: #f6f7f9; border-radius: 4px; padding: 6px 10px; }
dl.figures dt { font-size: 12px; color: #56606b; }
dl.figures dd { margin: 0; font-size: 15px; font-variant-numeric: tabular-nums; }
.big { font-size: 20px; font-weight: 600; }
.verdict { font-weight: 600; margin: 6px 0 10px; }
.verdict.breached { color: #9b1c1c; }
svg.chart { display: block; width: 100%; height: auto; background: #fff; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #45525c; }
svg.chart .axis { stroke: #9aa5b1; stroke-width: 1; }
svg.chart .grid { stroke: #eceff2; stroke-width: 1; }
svg.chart .den { fill: #9ec5ea; }
svg.chart .bad { fill: #d9473f; }
svg.chart .hit { fill: transparent; }
svg.chart .share { fill: #1d232a; }
svg.chart .off-scale { fill: #1d232a; }
svg.chart line.target { stroke: #c62828; stroke-width: 2; }
svg.chart text.target-label, svg.chart text.window-label {
  paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
svg.chart text.target-label { fill: #c62828; font-weight: 600; }
svg.chart line.window { stroke: #1d232a; stroke-width: 1.5; stroke-dasharray: 6 4; }
svg.chart text.window-label { fill: #1d232a; }
.legend { display: flex; gap: 18px; flex-wrap: wrap; color: #45525c; font-size: 12px;
          margin: 4px 0 0; }
.sw { display: inline-block; width: 12px; height: 12px; vertical-align: -2px;
      margin-right: 4px; }
.sw.den { background: #9ec5ea; } .sw.bad { background: #d9473f; }
.sw.target { height: 0; border-top: 2px solid #c62828; }
.sw.window { height: 0; border-top: 2px dashed #1d232a; }
.sw.share { width: 7px; height: 7px; border-radius: 50%; background: #1d232a; }
table.orders { width: 100%; }
.cause { display: inline-block; background: #f1e7e6; color: #7d2620; border-radius: 3px;
         padding: 0 5px; font-size: 12px; }
table.sellers { width: 100%; table-layout: fixed; }
table.sellers th.metric { font-size: 12px; overflow-wrap: anywhere; }
table.sellers th .target { display: block; font-weight: 400; color: #56606b; }
table.sellers td.cell { font-size: 12px; }
table.sellers td.cell .status { margin-bottom: 2px; }
table.sellers .filtered { outline: 2px solid #0b5cad; outline-offset: -2px; }
table.sellers td.seller { overflow-wrap: anywhere; }
.detail { color: #56606b; display: block; }
form.filter { margin: 0 0 12px; display: flex; gap: 8px; align-items: center; }
.pager { margin: 12px 0; }
.empty { color: #56606b; font-style: italic; }
"""


def seller_page(doc: Mapping[str, Any], *, catalog: Catalog,
                grafana_url: str | None = None) -> str:
    """``/sellers/{id}``: one seller's explain document (all metrics, or the one of
    ``?metric=M``) as a page.

    Per metric (catalog order): the value against the target with its status, the
    window, the headroom or the recovery, a per-day chart and the table of the
    orders that count against it. The numbers are the document's, never
    recomputed, so the page cannot disagree with the API; only their display
    (percentages) is derived, exactly, from numerator and denominator.
    """
    seller_id = str(doc.get("seller_id", ""))
    metrics: Mapping[str, Any] = doc.get("metrics") or {}
    names = _catalog_order(metrics, catalog)
    seller_href = _seller_href(seller_id)
    nav = ['<a href="/sellers">← sellers in warning or breach</a>']
    if len(names) < len(catalog.metrics):
        nav.append(f'<a class="all-metrics" href="{seller_href}">all metrics</a>')
    grafana = _safe_link(grafana_url)
    if grafana is not None:
        nav.append(f'<a class="grafana" href="{_e(grafana)}">Grafana seller dashboard</a>')
    parts = [
        f'<nav>{"".join(nav)}</nav>',
        f'<h1>Seller <span class="mono" data-field="seller_id">{_e(seller_id)}</span></h1>',
        f'<p class="sub">as of <time data-field="as_of">{_e(doc.get("as_of", ""))}</time>'
        f' (UTC) · {len(names)} metric{"s" if len(names) != 1 else ""}</p>',
    ]
    if len(names) > 1:
        parts.append(_summary(metrics, names, catalog))
    if not names:
        parts.append('<p class="empty">No metric in this document.</p>')
    for name in names:
        parts.append(_metric_section(name, metrics[name], _metric_or_none(catalog, name)))
    return _document(f"Seller {seller_id} · popstream", "\n".join(parts))


def sellers_index(rows: Sequence[Mapping[str, Any]], *, catalog: Catalog,
                  metric: str | None, next_cursor: str | None) -> str:
    """``/sellers``: the sellers in warning or breach, in the order given (the
    caller sorts them with :func:`worst_first_key`), one column per metric.

    ``metric``: the filter in force (``?metric=M``), shown selected in the filter
    form and highlighted in the table. ``next_cursor``: when the list continues,
    the "next page" link passes it back as ``cursor`` (with the filter kept).
    """
    all_names = [m.name for m in catalog.metrics]
    filtered = metric if metric in all_names else None
    options = ['<option value="">all metrics</option>']
    for name in all_names:
        chosen = " selected" if name == filtered else ""
        options.append(f'<option value="{_e(name)}"{chosen}>{_e(name)}</option>')
    title = ("Sellers in warning or breach" if metric is None
             else f"Sellers in warning or breach on {metric}")
    parts = [
        '<nav><a href="/sellers">all sellers in warning or breach</a></nav>',
        f'<h1>{_e(title)}</h1>',
        '<p class="sub">Worst first: breaches before warnings; on one metric, the '
        'most orders to recover (breach) or the least headroom (warning) first.</p>',
        '<form class="filter" method="get" action="/sellers">'
        '<label for="metric">metric</label>'
        f'<select id="metric" name="metric">{"".join(options)}</select>'
        '<button type="submit">filter</button></form>',
    ]
    if not rows:
        where = "" if metric is None else f" on {metric}"
        parts.append(f'<p class="empty" data-field="empty">No seller is in warning or '
                     f'breach{_e(where)}.</p>')
    else:
        parts.append(_sellers_table(rows, catalog, filtered))
    if next_cursor is not None:
        query = [("metric", metric)] if metric is not None else []
        query.append(("cursor", next_cursor))
        parts.append(f'<p class="pager"><a class="next" rel="next" data-field="next_cursor" '
                     f'data-value="{_e(next_cursor)}" href="?{_e(urlencode(query))}">'
                     'next page →</a></p>')
    return _document(title + " · popstream", "\n".join(parts))


def worst_first_key(row: Mapping[str, Any], metric: str | None = None
                    ) -> tuple[int, int, int, str]:
    """Sort key for ``/sellers`` rows, worst first (``sorted(rows, key=...)``).

    Without ``metric``: more breached metrics first, then more warnings. With
    ``metric``: by that metric's status (breach, warning, healthy, insufficient
    volume, absent); among breaches, more ``orders_to_recover`` first (null, no
    number of good orders recovers, before all); among warnings, less
    ``headroom`` first (null, a warning that is in fact breached under the
    ``min_count`` floor, before all). Ties: ``seller_id``, so pages are stable.
    """
    seller_id = str(row.get("seller_id", ""))
    figures: Mapping[str, Any] = row.get("metrics") or {}
    if metric is None:
        statuses = [str((m or {}).get("status")) for m in figures.values()]
        return -statuses.count("breach"), -statuses.count("warning"), 0, seller_id
    m = figures.get(metric)
    if m is None:
        return len(_STATUS_RANK), 0, 0, seller_id
    status = str(m.get("status"))
    rank = _STATUS_RANK.get(status, len(_STATUS_RANK))
    if status == "breach":
        to_recover = m.get("orders_to_recover")
        return (rank, 0, 0, seller_id) if to_recover is None else (
            rank, 1, -int(to_recover), seller_id)
    if status == "warning":
        headroom = m.get("headroom")
        return (rank, 0, 0, seller_id) if headroom is None else (
            rank, 1, int(headroom), seller_id)
    return rank, 0, 0, seller_id


# --- the seller page ------------------------------------------------------------

def _summary(metrics: Mapping[str, Any], names: Sequence[str], catalog: Catalog) -> str:
    """A table of all metrics at the top: the page is long (a chart and an order
    table per metric), so the standing at a glance, each row linking down."""
    rows = []
    for name in names:
        m = metrics[name]
        spec = _metric_or_none(catalog, name)
        rows.append(
            f'<tr><td><a href="#m-{_e(name)}">{_e(name)}</a></td>'
            f'<td>{_status_badge(m.get("status"))}</td>'
            f'<td class="num">{_e(_value_text(m))}</td>'
            f'<td class="num">{_e(_target_text(m, spec))}</td>'
            f'<td>{_e(_verdict(m, _noun(spec, m)))}</td></tr>')
    return ('<table class="summary"><thead><tr><th>metric</th><th>status</th>'
            '<th class="num">value</th><th class="num">target</th><th>headroom or '
            f'recovery</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _metric_section(name: str, m: Mapping[str, Any], spec: Metric | None) -> str:
    status = _status_class(m.get("status"))
    noun = _noun(spec, m)
    days: Sequence[Mapping[str, Any]] = m.get("days") or []
    first = days[0].get("date") if days else None
    last = days[-1].get("date") if days else None
    span = f" · {noun[0]} {_e(first)} .. {_e(last)}" if first and last else ""
    figures = [
        _fig("value",
             f'<span class="big" data-field="value"{_float_attr(m.get("value"))}>'
             f'{_e(_value_text(m))}</span><br>'
             f'<span data-field="numerator">{_e(_int_text(m.get("numerator")))}</span> / '
             f'<span data-field="denominator">{_e(_int_text(m.get("denominator")))}</span> '
             f'{noun[1]}'),
        _fig("target",
             f'<span data-field="direction">{_e(_direction(spec))}</span> '
             f'<span class="big" data-field="target"{_float_attr(m.get("target"))}>'
             f'{_e(_percent(m.get("target")))}</span>'),
        _fig("status", f'<span class="status {status}" data-field="status">'
                       f'{_e(m.get("status", NULL))}</span>'),
        _fig("window",
             f'<span data-field="window_days">{_e(_int_text(m.get("window_days")))}</span> '
             f'days, lag <span data-field="lag_days">{_e(_int_text(m.get("lag_days")))}'
             f'</span> days{span}'),
        _fig("headroom / recovery",
             f'headroom <span data-field="headroom">{_e(_int_text(m.get("headroom")))}'
             '</span><br>to recover <span data-field="orders_to_recover">'
             f'{_e(_int_text(m.get("orders_to_recover")))}</span><br>recovers on '
             f'<span data-field="recovers_on">{_e(_int_text(m.get("recovers_on")))}</span>'),
    ]
    breached = m.get("breached") is True
    description = spec.description if spec is not None else ""
    return "\n".join([
        f'<section class="metric {status}" id="m-{_e(name)}" data-metric="{_e(name)}">',
        f'<h2>{_e(name)} {_status_badge(m.get("status"))}</h2>',
        f'<p class="description">{_e(description)}</p>' if description else "",
        f'<p class="verdict{" breached" if breached else ""}">'
        f'{_e(_verdict(m, noun))}</p>',
        f'<dl class="figures">{"".join(figures)}</dl>',
        _chart(name, m, spec, noun),
        _orders_table(name, m, spec, noun),
        "</section>",
    ])


def _fig(label: str, body: str) -> str:
    return f"<div><dt>{_e(label)}</dt><dd>{body}</dd></div>"


def _verdict(m: Mapping[str, Any], noun: tuple[str, str, str]) -> str:
    """The one line an operator reads first: how far from a breach, or how far
    from recovering and when the window alone recovers it."""
    breached = m.get("breached")
    if breached is None:
        return f"no {noun[1]} in the window"
    if breached:
        n = m.get("orders_to_recover")
        return (f"breached: {_int_text(n)} good {_plural(n, noun[2], noun[1])} to recover, "
                f"recovers on {_int_text(m.get('recovers_on'))}")
    h = m.get("headroom")
    return f"headroom: {_int_text(h)} more bad {_plural(h, noun[2], noun[1])}"


def _orders_table(name: str, m: Mapping[str, Any], spec: Metric | None,
                  noun: tuple[str, str, str]) -> str:
    """The orders (or messages) that count against the metric, as the document
    lists them (sorted, maybe one page of them), and the link to the next page."""
    orders: Sequence[Mapping[str, Any]] = m.get("orders") or []
    messages = noun[1] == "messages"
    id_key, at_key = ("message_id", "sent_at") if messages else ("order_id", "purchased_at")
    total = sum(_int(d.get("bad")) for d in (m.get("days") or []))
    head = (f'<h3>{noun[1].capitalize()} against the metric: showing '
            f'<span data-field="orders_shown">{len(orders)}</span> of '
            f'<span data-field="orders_total">{total}</span></h3>')
    if not orders:
        body = f'<p class="empty">No {noun[1]} on this page.</p>'
    else:
        rows = []
        for i, entry in enumerate(orders):
            causes = [str(c) for c in (entry.get("causes") or [])]
            shown = ", ".join(f'<span class="cause">{_e(c)}</span>' for c in causes) or NULL
            rows.append(
                f'<tr class="order" data-row="{i}"><td class="num">{i + 1}</td>'
                f'<td class="id" data-field="{id_key}">{_e(entry.get(id_key, NULL))}</td>'
                f'<td class="mono" data-field="{at_key}">{_e(entry.get(at_key, NULL))}</td>'
                f'<td data-field="causes">{shown}</td>'
                f'<td class="mono" data-field="leaves_window_on">'
                f'{_e(entry.get("leaves_window_on", NULL))}</td></tr>')
        body = (f'<table class="orders" data-metric="{_e(name)}"><thead><tr>'
                f'<th class="num">#</th><th>{id_key}</th><th>{at_key} (UTC)</th>'
                f'<th>causes</th><th>leaves the window on</th></tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table>')
    cursor = m.get("next_cursor")
    pager = ""
    if cursor is not None:
        query = urlencode([("metric", name), ("limit", str(len(orders))),
                           ("cursor", str(cursor))])
        pager = (f'<p class="pager"><a class="next" rel="next" data-field="next_cursor" '
                 f'data-value="{_e(cursor)}" href="?{_e(query)}">next {len(orders)} '
                 f'{noun[1]} →</a></p>')
    return head + body + pager


# --- the chart --------------------------------------------------------------------

_W, _H = 1200, 250
_ML, _MR, _MT, _MB = 56, 64, 22, 34
_PW, _PH = _W - _ML - _MR, _H - _MT - _MB


def _chart(name: str, m: Mapping[str, Any], spec: Metric | None,
           noun: tuple[str, str, str]) -> str:
    """Inline SVG, one slot per day of the window: the day's orders (bar), the bad
    ones among them (bar over it), the day's bad share when not 0 (dot, right axis),
    and the target as the bad share it allows (red line, labelled) with the
    window's own bad share (dashed). Each day's ``<title>`` gives the exact counts.

    The target is drawn as a bad share for both directions (an ``at_least`` 97 %
    allows 3 % bad) so that one axis serves every metric. The share axis spans at
    least twice the allowed share: days with a handful of orders have shares up
    to 100 %, which would flatten the target line; those are marked at the top.
    """
    days: Sequence[Mapping[str, Any]] = m.get("days") or []
    target = _fraction(m.get("target"))
    at_least = spec is not None and spec.healthy == "at_least"
    allowed = (1 - target) if at_least else target
    n, d = _int(m.get("numerator")), _int(m.get("denominator"))
    window_share = (Fraction(d - n, d) if at_least else Fraction(n, d)) if d > 0 else None
    share_top = _nice_share(max(allowed * 2, (window_share or Fraction(0)) * 5 / 4,
                                Fraction(1, 100)))
    counts = [(_int(day.get("denominator")), _int(day.get("bad"))) for day in days]
    step, count_top = _nice_counts(max((c for c, _ in counts), default=0))

    def y_count(v: int) -> float:
        return _MT + _PH - _PH * v / count_top

    def y_share(s: Fraction) -> float:
        return _MT + _PH - _PH * float(min(s, share_top) / share_top)

    slot = _PW / max(len(days), 1)
    bar = max(slot * 0.72, min(slot, 1.0))
    out = [f'<svg class="chart" data-chart="{_e(name)}" viewBox="0 0 {_W} {_H}" '
           f'width="{_W}" height="{_H}" role="img" '
           f'aria-label="{_e(name)}: {noun[1]} and bad {noun[1]} per day, with the target">']
    # Grid and axes: counts on the left, bad share on the right.
    for tick in range(0, count_top + 1, step):
        y = y_count(tick)
        out.append(f'<line class="grid" x1="{_ML}" y1="{y:.1f}" x2="{_W - _MR}" '
                   f'y2="{y:.1f}"/><text x="{_ML - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{tick}</text>')
    for share in (Fraction(0), share_top / 2, share_top):
        y = y_share(share)
        out.append(f'<text x="{_W - _MR + 6}" y="{y + 4:.1f}">{_e(_pct_fraction(share))}'
                   '</text>')
    out.append(f'<text x="4" y="{_MT - 8}">{noun[1]}</text>'
               f'<text x="{_W - _MR + 6}" y="{_MT - 8}">bad share</text>')
    label_every = max(1, math.ceil(len(days) / 8))
    for i, (day, (den, bad)) in enumerate(zip(days, counts, strict=True)):
        date = str(day.get("date", ""))
        x = _ML + i * slot
        bx = x + (slot - bar) / 2
        share_text = f" ({_pct_fraction(Fraction(bad, den), 2)} bad)" if den > 0 else ""
        tip = (f"{date}: {den} {_plural(den, noun[2], noun[1])}, {bad} bad{share_text}")
        group = [f'<g class="day" data-date="{_e(date)}" data-denominator="{den}" '
                 f'data-bad="{bad}"><title>{_e(tip)}</title>'
                 f'<rect class="hit" x="{x:.1f}" y="{_MT}" width="{slot:.1f}" '
                 f'height="{_PH}"/>']
        if den > 0:
            group.append(f'<rect class="den" x="{bx:.1f}" y="{y_count(den):.1f}" '
                         f'width="{bar:.1f}" height="{_MT + _PH - y_count(den):.1f}"/>')
        if bad > 0:
            group.append(f'<rect class="bad" x="{bx:.1f}" y="{y_count(bad):.1f}" '
                         f'width="{bar:.1f}" height="{_MT + _PH - y_count(bad):.1f}"/>')
        if bad > 0:
            share = Fraction(bad, den)
            cx = x + slot / 2
            if share > share_top:  # off the share axis: a marker at its top
                group.append(f'<path class="off-scale" d="M{cx - 3:.1f},{_MT + 5} '
                             f'L{cx + 3:.1f},{_MT + 5} L{cx:.1f},{_MT} Z"/>')
            else:
                group.append(f'<circle class="share" cx="{cx:.1f}" '
                             f'cy="{y_share(share):.1f}" r="{min(3.0, slot / 3):.1f}"/>')
        group.append("</g>")
        out.append("".join(group))
        if i % label_every == 0:
            out.append(f'<text x="{x + slot / 2:.1f}" y="{_H - _MB + 16}" '
                       f'text-anchor="middle">{_e(date)}</text>')
    out.append(f'<line class="axis" x1="{_ML}" y1="{_MT + _PH}" x2="{_W - _MR}" '
               f'y2="{_MT + _PH}"/><line class="axis" x1="{_ML}" y1="{_MT}" x2="{_ML}" '
               f'y2="{_MT + _PH}"/><line class="axis" x1="{_W - _MR}" y1="{_MT}" '
               f'x2="{_W - _MR}" y2="{_MT + _PH}"/>')
    ty = y_share(allowed)
    target_label = (f"target: at least {_percent(m.get('target'))}, "
                    f"so bad share at most {_pct_fraction(allowed)}" if at_least else
                    f"target: bad share below {_percent(m.get('target'))}")
    out.append(f'<line class="target" data-share="{_e(str(allowed))}" x1="{_ML}" '
               f'y1="{ty:.1f}" x2="{_W - _MR}" y2="{ty:.1f}"><title>{_e(target_label)}'
               f'</title></line><text class="target-label" x="{_W - _MR - 6}" '
               f'y="{ty - 5:.1f}" text-anchor="end">{_e(target_label)}</text>')
    if window_share is not None:
        wy = y_share(window_share)
        below = abs(wy - ty) < 16 and wy >= ty
        label = f"window: {_pct_fraction(window_share, 2)} bad"
        out.append(f'<line class="window" x1="{_ML}" y1="{wy:.1f}" x2="{_W - _MR}" '
                   f'y2="{wy:.1f}"/><text class="window-label" x="{_ML + 6}" '
                   f'y="{wy + 14 if below else wy - 5:.1f}">{_e(label)}</text>')
    out.append("</svg>")
    legend = (f'<p class="legend"><span><span class="sw den"></span>{noun[1]} per '
              f'{noun[0][:-1]}</span><span><span class="sw bad"></span>bad {noun[1]}'
              '</span><span><span class="sw share"></span>the day\'s bad share (right '
              'axis; ▲ above it)</span><span><span class="sw target"></span>target</span>'
              '<span><span class="sw window"></span>the window\'s bad share</span></p>')
    return "".join(out) + legend


def _nice_counts(top: int) -> tuple[int, int]:
    """``(step, axis top)``: a 1-2-5 step giving at most 5 intervals, and the
    axis top as the first multiple of it at or above ``top``."""
    if top <= 0:
        return 1, 1
    step = 1
    while True:
        for mult in (1, 2, 5):
            if top <= step * mult * 5:
                s = step * mult
                return s, s * -(-top // s)
        step *= 10


def _nice_share(least: Fraction) -> Fraction:
    """The first 1-2-5 share (0.1 %, 0.2 %, 0.5 %, 1 %, ..., 100 %) at or above."""
    for exponent in range(-4, 1):
        for mult in (1, 2, 5):
            candidate = Fraction(mult) * Fraction(10) ** exponent
            if candidate >= least:
                return min(candidate, Fraction(1))
    return Fraction(1)


# --- the sellers table -------------------------------------------------------------

def _sellers_table(rows: Sequence[Mapping[str, Any]], catalog: Catalog,
                   filtered: str | None) -> str:
    head = ['<th style="width:190px">seller</th>',
            '<th class="num" style="width:64px">breaches</th>',
            '<th class="num" style="width:68px">warnings</th>']
    for spec in catalog.metrics:
        mark = " filtered" if spec.name == filtered else ""
        head.append(f'<th class="metric{mark}">{_breakable(spec.name)}<span class="target">'
                    f'{_e(_direction(spec))} {_e(_percent(spec.target))}</span></th>')
    body = []
    for row in rows:
        seller_id = str(row.get("seller_id", ""))
        figures: Mapping[str, Any] = row.get("metrics") or {}
        statuses = [str((m or {}).get("status")) for m in figures.values()]
        cells = [f'<td class="seller id"><a href="{_seller_href(seller_id)}" '
                 f'data-field="seller_id">{_e(seller_id)}</a></td>',
                 f'<td class="num" data-field="breaches">{statuses.count("breach")}</td>',
                 f'<td class="num" data-field="warnings">{statuses.count("warning")}</td>']
        for spec in catalog.metrics:
            cells.append(_seller_cell(spec, figures.get(spec.name), spec.name == filtered))
        body.append(f'<tr class="seller" data-seller-id="{_e(seller_id)}">'
                    f'{"".join(cells)}</tr>')
    return (f'<table class="sellers"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _seller_cell(spec: Metric, m: Mapping[str, Any] | None, filtered: bool) -> str:
    mark = " filtered" if filtered else ""
    if m is None:
        return f'<td class="cell{mark}">{NULL}</td>'
    status = _status_class(m.get("status"))
    if m.get("orders_to_recover") is not None or m.get("status") == "breach":
        detail = (f'<span data-field="orders_to_recover">'
                  f'{_e(_int_text(m.get("orders_to_recover")))}</span> to recover')
    else:
        detail = (f'headroom <span data-field="headroom">'
                  f'{_e(_int_text(m.get("headroom")))}</span>')
    return (f'<td class="cell {status}{mark}" data-metric="{_e(spec.name)}" '
            f'data-status="{_e(m.get("status", ""))}">'
            f'<span class="status {status}" data-field="status">{_e(m.get("status", NULL))}'
            f'</span><span class="detail"><b data-field="value"'
            f'{_float_attr(m.get("value"))}>{_e(_value_text(m))}</b> '
            f'(<span data-field="numerator">{_e(_int_text(m.get("numerator")))}</span>/'
            f'<span data-field="denominator">{_e(_int_text(m.get("denominator")))}</span>'
            f')</span><span class="detail">{detail}</span></td>')


# --- formatting ------------------------------------------------------------------

def _document(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n"
            f'<body><div class="page">\n{body}\n</div></body></html>\n')


def _breakable(name: str) -> str:
    """A metric name that may wrap after its underscores (narrow table headers)."""
    return _e(name).replace("_", "_<wbr>")


def _e(value: object) -> str:
    """Escape for text and for double- or single-quoted attributes."""
    return html.escape(str(value), quote=True)


def _seller_href(seller_id: str) -> str:
    """The page of a seller: the id percent-quoted as one path segment (``/``, ``?``,
    ``#`` and ``..`` in an id stay inside it), then escaped for the attribute."""
    return _e("/sellers/" + quote(seller_id, safe=""))


def _safe_link(url: str | None) -> str | None:
    """Grafana's URL if it is one a browser should follow (http, https or a path on
    this host), never ``javascript:`` or another scheme from a bad setting."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    if not parts.scheme and url.startswith("/") and not url.startswith("//"):
        return url
    return None


def _catalog_order(metrics: Mapping[str, Any], catalog: Catalog) -> list[str]:
    """Catalog order; a metric the catalog does not know (a document from another
    catalog) still shows, after the others, rather than vanishing."""
    known = [m.name for m in catalog.metrics if m.name in metrics]
    return known + [str(n) for n in metrics if n not in known]


def _metric_or_none(catalog: Catalog, name: str) -> Metric | None:
    try:
        return catalog.by_name(name)
    except KeyError:
        return None


def _noun(spec: Metric | None, m: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(days, plural, singular)``: a response metric counts buyer messages by the
    day they were sent, every other metric orders by purchase day."""
    orders: Sequence[Mapping[str, Any]] = m.get("orders") or []
    messages = (spec.denominator == "response_due" if spec is not None
                else bool(orders) and "message_id" in orders[0])
    return ("message days", "messages", "message") if messages else (
        "purchase days", "orders", "order")


def _plural(n: object, one: str, many: str) -> str:
    return one if n == 1 else many


def _direction(spec: Metric | None) -> str:
    if spec is None:
        return "target"
    return "at least" if spec.healthy == "at_least" else "below"


def _status_class(status: object) -> str:
    return f"s-{status}" if status in STATUSES else "s-unknown"


def _status_badge(status: object) -> str:
    return f'<span class="status {_status_class(status)}">{_e(status or NULL)}</span>'


def _float_attr(value: object) -> str:
    """`` data-value="repr"`` for a number, so a test reads the exact float behind a
    rounded percentage; nothing for null (the figure is then the text, ``—``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f' data-value="{_e(repr(value))}"'
    return ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _int_text(value: object) -> str:
    """An integer or a date as the API gives it; null as ``—``."""
    return NULL if value is None else str(value)


def _fraction(value: object) -> Fraction:
    """A target as the decimal it is written as (0.97 is 97/100), like the engine."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Fraction(repr(float(value)))
    return Fraction(0)


def _percent(value: object) -> str:
    """A target as a percentage, every digit of its decimal (2.5 %, 0.3 %, 97 %)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return NULL
    shown = Decimal(repr(float(value))) * 100
    return f"{shown.normalize():f} %"


def _target_text(m: Mapping[str, Any], spec: Metric | None) -> str:
    return f"{_direction(spec)} {_percent(m.get('target'))}"


def _value_text(m: Mapping[str, Any]) -> str:
    """``n / d`` as a percentage, exactly rounded, with as many decimals (2 at least)
    as it takes for the shown figure to sit on the same side of the target as the
    exact value: 96.999 % is not shown as "97.00 %" next to a 97 % target."""
    n, d = m.get("numerator"), m.get("denominator")
    if not isinstance(n, int) or not isinstance(d, int) or d <= 0:
        return NULL
    exact_value = Fraction(n, d)
    target = _fraction(m.get("target"))
    side = (exact_value > target) - (exact_value < target)
    for places in range(2, 13):
        shown = Fraction(round(exact_value * 100 * 10**places), 100 * 10**places)
        if (shown > target) - (shown < target) == side:
            return _pct_fraction(exact_value, places)
    return _pct_fraction(exact_value, 12)


def _pct_fraction(share: Fraction, places: int | None = None) -> str:
    """A share as a percentage: ``places`` decimals, or (None) the fewest that
    show it exactly, up to 4."""
    if places is None:
        places = next((p for p in range(5) if (share * 100 * 10**p).denominator == 1), 4)
    scaled = round(share * 100 * 10**places)
    digits = str(abs(scaled)).rjust(places + 1, "0")
    sign = "-" if scaled < 0 else ""
    whole = f"{sign}{digits[:-places]}.{digits[-places:]}" if places else f"{sign}{digits}"
    return f"{whole} %"


__all__ = ["NULL", "seller_page", "sellers_index", "worst_first_key"]
