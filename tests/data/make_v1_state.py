"""Write ``v1_state.msgpack``: engine state as popstream 0.x wrote it before the
v1.1 record format (issues #12, #13), for the migration test.

Run it with a checkout of the last v1-format commit, not this tree::

    git worktree add /tmp/v1 c0b23e7
    PYTHONPATH=/tmp/v1 python tests/data/make_v1_state.py tests/data/v1_state.msgpack

The file holds the log (JSON documents), the clock, the whole-engine snapshot and
every seller's changelog chunks (day, or -1 for META).
"""

from __future__ import annotations

import sys

import msgspec
import orjson

from streams.engine.engine import Engine
from streams.engine.events import US_PER_DAY, decode_event
from streams.generator import LogSpec, generate

END = 19_889 * US_PER_DAY  # 2024-06-15
spec = LogSpec(sellers=6, orders_per_seller_per_day=1.5, days=40, end_us=END,
               drifting_share=0.5, seed=13)
docs = list(generate(spec))
now = END + 3_600_000_000 * 7
engine = Engine(now=now, track_dirty=True)
for doc in docs:
    engine.apply(decode_event(orjson.dumps(doc)))
dirty = engine.take_dirty()
chunks = {sid: {(-1 if day is None else day): data
                for day, data in engine.seller_chunks(sid, days).items() if data is not None}
          for sid, days in dirty.items()}
out = {"now": now, "docs": [orjson.dumps(d) for d in docs], "snapshot": engine.snapshot(),
       "chunks": chunks}
with open(sys.argv[1], "wb") as fh:
    fh.write(msgspec.msgpack.encode(out))
print(f"{len(docs)} events, {engine.tracked_orders} records, "
      f"{sum(len(s.future) for s in engine.sellers.values())} held", file=sys.stderr)
