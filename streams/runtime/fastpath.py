"""A leaner path through Faust: a transport whose consumer hands whole fetched
batches of the event topics to the worker, instead of one awaited callback, one
task and one stream step per message.

Why (measured, issue #5): the worker on Faust's stock path applies ~9.7k events/s
while the engine alone does ~220k/s. A profile of Faust's floor shows the cost in
the consumer loop itself: ``Consumer._drain_messages`` awaits
``wait_first(callback(message), suspend_flow.wait())`` for every message (a task
per event), then the conductor decodes it into an Event, queues it, and the agent's
stream iterates it. None of that is configurable.

What stays Faust's: the consumer group, fetching, flow control during rebalances,
table recovery (changelog messages still take the stock per-message route), offset
commits (we mark offsets acked through the same bookkeeping ``Consumer.ack`` uses),
the producer, the web server, timers. Plugged in through Faust's own transport
registry: the worker's broker URL uses the ``popkafka://`` scheme.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as _aiokafka
from faust.types import TP

SCHEME = "popkafka"
BatchHandler = Callable[[TP, list[Any]], None]


class BatchConsumer(_aiokafka.Consumer):
    """Delivers event-topic records to ``app.popstream_batch_handler`` in batches."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - I/O loop
        handler: BatchHandler | None = getattr(self.app, "popstream_batch_handler", None)
        topics: frozenset[str] = getattr(self.app, "popstream_batch_topics", frozenset())
        if handler is None:
            await super()._drain_messages(fetcher)
            return
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        # Cleared by the worker while it cannot save state or dead letters: what
        # it cannot save, it does not take in (streams.runtime.flusher).
        may_consume: asyncio.Event | None = getattr(self.app, "popstream_may_consume", None)
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                # The generation these records were fetched in: read right after the
                # fetch, as Faust's getmany does. Read before it, a rebalance during
                # the 1 s wait made us drop the first records of the new generation
                # (a recovery's changelog records among them) with nothing to fetch
                # them again: the recovery then waited forever.
                generation = self.app.consumer_generation_id
                await asyncio.sleep(0)
                if not records or self.should_stop:
                    continue
                if may_consume is not None and not may_consume.is_set():
                    # Paused while these were fetched: hold them (one fetch, bounded)
                    # until the worker can save again; a rebalance meanwhile makes
                    # the generation check below drop them (positions are reset).
                    await may_consume.wait()
                if not self.flow_active:
                    # As Faust's getmany: the flow stopped after this fetch (a
                    # rebalance began): drop the records, back to committed offsets.
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        self.log.warning("seek while the flow is stopped failed: %r", exc)
                    continue
                for tp, batch in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break  # a rebalance began: positions will be reset
                    if active is not None and tp not in active and (
                            tp not in self._buffered_partitions):
                        continue  # paused since the fetch (as Faust's getmany)
                    r_offset = get_read_offset(tp)
                    if r_offset is not None:
                        batch = [r for r in batch if r.offset >= r_offset]
                    if not batch:
                        continue
                    if tp.topic in topics:
                        handler(tp, batch)
                        set_read_offset(tp, batch[-1].offset)
                        continue
                    for record in batch:  # the stock route (changelog records)
                        if self.app.consumer_generation_id != generation:
                            break
                        await callback(self._to_message(tp, record))
                        set_read_offset(tp, record.offset)
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    def ack_offsets(self, tp: TP, first: int, last: int) -> int:
        """Mark ``first..last`` of ``tp`` processed, as ``Consumer.ack`` does per
        message; offsets below the committed one are ignored. Returns how many."""
        committed = self._committed_offset[tp]
        start = first if committed is None else max(first, committed)
        index = self._acked_index[tp]
        fresh = [offset for offset in range(start, last + 1) if offset not in index]
        index.update(fresh)
        self._acked[tp].extend(fresh)
        self._n_acked += len(fresh)
        return len(fresh)


class Transport(_aiokafka.Transport):
    Consumer = BatchConsumer


TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
