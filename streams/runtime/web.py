"""The worker's HTTP views: ``/metrics``, ``/health``, ``/api/sellers[/{id}]``.

Until the worker's first recovery is done its state is partial, and a partial
page is worse than none: to Prometheus, a valid ``/metrics`` without a seller's
series means the series ended (alerts resolve, dashboards gap). So ``/metrics``
and ``/api`` answer 503 until then; ``/health`` always answers, with ``status``
``starting``, ``ok`` or ``degraded`` (and why).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp.web import StreamResponse

from streams.engine.catalog import STATUSES
from streams.runtime.pipeline import MAX_PAGE, Pipeline

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("popstream.web")
_NOT_READY = {"error": "recovering state: not ready yet", "status": "starting"}


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


def add_views(app: Any, pipeline: Pipeline, health: Callable[[], dict[str, Any]]) -> None:
    """Register the views on a Faust app (``health`` adds the worker's own checks)."""

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
