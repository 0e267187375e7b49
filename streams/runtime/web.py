"""The worker's HTTP views: ``/metrics``, ``/health``, ``/api/sellers[/{id}]``,
``/api/sellers/{id}/explain`` and the HTML pages ``/sellers[/{id}]`` (issue #13).

Until the worker's first recovery is done its state is partial, and a partial
page is worse than none: to Prometheus, a valid ``/metrics`` without a seller's
series means the series ended (alerts resolve, dashboards gap). So ``/metrics``
and ``/api`` answer 503 until then; ``/health`` always answers, with ``status``
``starting``, ``ok`` or ``degraded`` (and why).
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp.web import StreamResponse

from streams.engine.catalog import STATUSES
from streams.engine.explain import MAX_LIMIT, BadCursor, explain_seller
from streams.pages import seller_page, sellers_index
from streams.runtime.pipeline import INDEX_PAGE, MAX_PAGE, Pipeline

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("popstream.web")
_NOT_READY = {"error": "recovering state: not ready yet", "status": "starting"}
_RANK_SLICE = 1000  # sellers ranked between two yields to the loop (~10 ms)


def page_query(params: dict[str, str], pipeline: Pipeline) -> dict[str, Any] | str:
    """``/api/sellers`` query parameters, validated: the keyword arguments of
    :meth:`Pipeline.sellers_page`, or the message of a 400."""
    allowed = {"status", "metric", "limit", "cursor"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        return f"unknown parameters {unknown}; allowed: {sorted(allowed)}"
    out: dict[str, Any] = {}
    status = params.get("status")
    if status is not None:
        if status not in STATUSES:
            return f"status must be one of {list(STATUSES)}, got {status!r}"
        out["status"] = status
    metric = params.get("metric")
    if metric is not None:
        names = [m.name for m in pipeline.engine.catalog.metrics]
        if metric not in names:
            return f"metric must be one of {names}, got {metric!r}"
        out["metric"] = metric
    limit = params.get("limit")
    if limit is not None:
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE:
            return f"limit must be an integer 1..{MAX_PAGE}, got {limit!r}"
        out["limit"] = int(limit)
    if "cursor" in params:
        out["cursor"] = params["cursor"]
    return out


def explain_query(params: dict[str, str], pipeline: Pipeline) -> dict[str, Any] | str:
    """``/api/sellers/{id}/explain`` (and ``/sellers/{id}``) query parameters,
    validated: keyword arguments of :func:`explain_seller`, or the message of a 400."""
    allowed = {"metric", "limit", "cursor"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        return f"unknown parameters {unknown}; allowed: {sorted(allowed)}"
    out: dict[str, Any] = {}
    metric = params.get("metric")
    if metric:
        names = [m.name for m in pipeline.engine.catalog.metrics]
        if metric not in names:
            return f"metric must be one of {names}, got {metric!r}"
        out["metric"] = metric
    limit = params.get("limit")
    if limit is not None:
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            return f"limit must be an integer 1..{MAX_LIMIT}, got {limit!r}"
        out["limit"] = int(limit)
    if params.get("cursor"):
        out["cursor"] = params["cursor"]
    return out


def _explain(pipeline: Pipeline, seller_id: str, query: dict[str, Any]
             ) -> tuple[dict[str, Any] | None, str | None]:
    """``(document, None)``, ``(None, None)`` for a seller without orders here, or
    ``(None, message)`` for a cursor this API did not hand out."""
    try:
        return explain_seller(pipeline.engine, seller_id, **query), None
    except BadCursor as exc:
        return None, str(exc)


def _not_here(seller_id: str) -> dict[str, str]:
    return {"error": f"seller {seller_id!r} has no orders in any window on this worker"}


def add_views(app: Any, pipeline: Pipeline, health: Callable[[], dict[str, Any]],
              grafana_url: str | None = None) -> None:
    """Register the views on a Faust app (``health`` adds the worker's own checks;
    ``grafana_url``: the seller dashboard the seller pages link to, id appended)."""

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        if not pipeline.ready:
            return web.json(_NOT_READY, status=503)
        # Streamed part by part, never joined: at a million sellers a join and an
        # encode of the whole page held the loop for ~100 ms. Compressed when the
        # scraper asks (Prometheus does): aiohttp compresses parts over 4 KiB in a
        # thread, off the loop. A failure midway ends the body unterminated, which
        # fails the scrape instead of passing off a partial page.
        response = StreamResponse(headers={"Content-Type": METRICS_CONTENT_TYPE})
        response.enable_compression()
        await response.prepare(request)
        try:
            for part in pipeline.render_parts():
                await response.write(part.encode())
                await asyncio.sleep(0)  # let messages, ticks and /health through
            await response.write_eof()
        except ConnectionResetError:
            # The scraper hung up (its timeout, a worker stopping): nothing to tell.
            log.debug("/metrics: the client went away mid-page")
        return response

    @app.page("/health")  # type: ignore[untyped-decorator]
    async def health_view(web: Any, request: Any) -> Any:
        # Cheap, for health checks and benchmarks: no per-seller work.
        return web.json(health())

    @app.page("/api/sellers")  # type: ignore[untyped-decorator]
    async def sellers(web: Any, request: Any) -> Any:
        if not pipeline.ready:
            return web.json(_NOT_READY, status=503)
        query = page_query(dict(request.query), pipeline)
        if isinstance(query, str):
            return web.json({"error": query}, status=400)
        return web.bytes(orjson.dumps(pipeline.sellers_page(**query)),
                         content_type="application/json")

    @app.page("/api/sellers/{seller_id}")  # type: ignore[untyped-decorator]
    async def seller(web: Any, request: Any, seller_id: str) -> Any:
        if not pipeline.ready:
            return web.json(_NOT_READY, status=503)
        doc = pipeline.sellers_json(seller_id)
        if doc is None:
            return web.json({"error": f"seller {seller_id!r} is not owned by this worker"},
                            status=404)
        return web.bytes(orjson.dumps(doc), content_type="application/json")

    @app.page("/api/sellers/{seller_id}/explain")  # type: ignore[untyped-decorator]
    async def explain(web: Any, request: Any, seller_id: str) -> Any:
        if not pipeline.ready:
            return web.json(_NOT_READY, status=503)
        query = explain_query(dict(request.query), pipeline)
        if isinstance(query, str):
            return web.json({"error": query}, status=400)
        doc, error = _explain(pipeline, seller_id, query)
        if error is not None:
            return web.json({"error": error}, status=400)
        if doc is None:
            return web.json(_not_here(seller_id), status=404)
        return web.bytes(orjson.dumps(doc), content_type="application/json")

    @app.page("/sellers")  # type: ignore[untyped-decorator]
    async def sellers_html(web: Any, request: Any) -> Any:
        if not pipeline.ready:
            return _html(web, _NOT_READY["error"], 503)
        params = dict(request.query)
        metric = params.get("metric") or None
        names = [m.name for m in pipeline.engine.catalog.metrics]
        cursor = params.get("cursor") or None
        if metric is not None and metric not in names:
            return _html(web, f"metric must be one of {names}, got {metric!r}", 400)
        if cursor is not None and not cursor.isdigit():
            return _html(web, f"cursor {cursor[:80]!r} is not one this page handed out", 400)
        # Ranked in slices: at a million sellers a few per cent alert, ~20,000
        # sellers to rank, and /health and the messages must get through meanwhile.
        keyed = []
        for n, candidate in enumerate(pipeline.index_candidates(), start=1):
            key = pipeline.index_key(candidate, metric)
            if key is not None:
                keyed.append((key, candidate))
            if n % _RANK_SLICE == 0:
                await asyncio.sleep(0)
        rows, next_cursor = pipeline.index_page(keyed, INDEX_PAGE, cursor)
        return web.html(sellers_index(rows, catalog=pipeline.engine.catalog, metric=metric,
                                      next_cursor=next_cursor))

    @app.page("/sellers/{seller_id}")  # type: ignore[untyped-decorator]
    async def seller_html(web: Any, request: Any, seller_id: str) -> Any:
        if not pipeline.ready:
            return _html(web, _NOT_READY["error"], 503)
        query = explain_query(dict(request.query), pipeline)
        if isinstance(query, str):
            return _html(web, query, 400)
        doc, error = _explain(pipeline, seller_id, query)
        if error is not None:
            return _html(web, error, 400)
        if doc is None:
            return _html(web, _not_here(seller_id)["error"], 404)
        link = None if grafana_url is None else grafana_url + quote(seller_id, safe="")
        return web.html(seller_page(doc, catalog=pipeline.engine.catalog, grafana_url=link))


def _html(web: Any, message: str, status: int) -> Any:
    """A plain error page (escaped: the message may quote a hostile id)."""
    body = (f'<!doctype html><html><head><meta charset="utf-8"><title>popstream</title>'
            f'</head><body><p><a href="/sellers">sellers in warning or breach</a></p>'
            f"<p>{html.escape(message)}</p></body></html>")
    return web.html(body, status=status)
