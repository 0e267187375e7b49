"""Status transitions on ``popstream-status`` (issue #10 item 1), on a real broker:
a consumer folding them holds exactly the statuses the worker serves."""

from __future__ import annotations

import orjson
import pytest

from streams.runtime.topics import TopicNames
from tests.integration.harness import consume_all, produce, run, wait_for
from tests.integration.test_worker import Stack, generated, messages_for
from tests.integration.test_worker import stack as stack  # the fixture

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_transitions_folded_equal_the_served_statuses(stack: Stack) -> None:
    events = generated(sellers=30, seed=12)
    msgs = messages_for(stack, events, seed=12)
    run(produce(stack.bootstrap, msgs))
    worker = stack.worker("status")
    served = wait_for(lambda: (s := worker.sellers()) and len(s) == 30 and s, 120,
                      "every seller served")
    want = {(seller, metric): mv["status"] for seller, metrics in served.items()
            for metric, mv in metrics.items() if mv["status"] != "insufficient_volume"}
    assert set(want.values()) >= {"healthy"}, "a log that exercises statuses"

    def folded() -> dict[tuple[str, str], str] | None:
        state: dict[tuple[str, str], str] = {}
        for m in run(consume_all(stack.bootstrap, TopicNames(stack.prefix).status,
                                 expect=len(want), timeout=5)):
            doc = orjson.loads(m.value)
            assert m.key == doc["seller_id"].encode()
            assert state.get((doc["seller_id"], doc["metric"]),
                             "insufficient_volume") == doc["from"]
            state[(doc["seller_id"], doc["metric"])] = doc["to"]
        live = {k: v for k, v in state.items() if v != "insufficient_volume"}
        return live if live == want else None

    wait_for(folded, 60, "the folded transitions to equal the served statuses")
