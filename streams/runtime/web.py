"""The worker's HTTP views: ``/metrics``, ``/health``, ``/api/sellers[/{id}]``.

Until the worker's first recovery is done its state is partial, and a partial
page is worse than none: to Prometheus, a valid ``/metrics`` without a seller's
series means the series ended (alerts resolve, dashboards gap). So ``/metrics``
and ``/api`` answer 503 until then; ``/health`` always answers, with ``status``
``starting``, ``ok`` or ``degraded`` (and why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from streams.runtime.pipeline import Pipeline

_NOT_READY = {"error": "recovering state: not ready yet", "status": "starting"}


def add_views(app: Any, pipeline: Pipeline, health: Callable[[], dict[str, Any]]) -> None:
    """Register the views on a Faust app (``health`` adds the worker's own checks)."""

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        if not pipeline.ready:
            return web.json(_NOT_READY, status=503)
        return web.bytes(pipeline.render_metrics(),
                         content_type="text/plain; version=0.0.4")

    @app.page("/health")  # type: ignore[untyped-decorator]
    async def health_view(web: Any, request: Any) -> Any:
        # Cheap, for health checks and benchmarks: no per-seller work.
        return web.json(health())

    @app.page("/api/sellers")  # type: ignore[untyped-decorator]
    async def sellers(web: Any, request: Any) -> Any:
        if not pipeline.ready:
            return web.json(_NOT_READY, status=503)
        return web.bytes(orjson.dumps(pipeline.sellers_json()),
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
