"""The limit: a bare aiokafka consumer that fetches (``getmany``) and decodes
(``orjson``) every message and does nothing else. Nothing built on aiokafka reads
the log faster, so every other contender is reported as a share of this."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer

from bench.peers.common import Tally, parse_args


async def main() -> None:
    args = parse_args(__doc__ or "")
    tally = Tally(args)
    consumer = AIOKafkaConsumer(*args.topics.split(","), bootstrap_servers=args.bootstrap,
                                group_id=args.group, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    loads, seen = orjson.loads, tally.seen
    while True:
        batches = await consumer.getmany(timeout_ms=1000)
        for records in batches.values():
            for record in records:
                doc = loads(record.value)  # bulk messages count every element
                if type(doc) is list:
                    for _ in doc:
                        if seen(record.timestamp):
                            tally.finish()
                elif seen(record.timestamp):
                    tally.finish()


if __name__ == "__main__":
    asyncio.run(main())
