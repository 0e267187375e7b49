"""Event builders for hand-written engine tests: one line per event, defaults for
everything a rule does not look at (seller ``s1``, order ``o1``, fresh event ids)."""

from __future__ import annotations

from typing import Any

import orjson

_ids = iter(range(10**9))


def ev(kind: str, at: str, order: str | None = "o1", seller: str = "s1", **fields: Any) -> bytes:
    doc: dict[str, Any] = {
        "event_id": fields.pop("event_id", f"e{next(_ids)}"),
        "type": kind,
        "seller_id": seller,
        "occurred_at": at,
        **fields,
    }
    if order is not None:
        doc["order_id"] = order
    return orjson.dumps(doc)


def order(at: str = "2024-06-14T10:00:00Z", ship_by: str = "2024-06-16T10:00:00Z",
          **kw: Any) -> bytes:
    return ev("order", at, ship_by=ship_by, **kw)
