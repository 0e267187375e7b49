"""Session-wide fixtures: one real Kafka broker for every test that asks for it.

The broker starts on first use (unit tests never pay for it) and stops at the end
of the session. Set KAFKA_BOOTSTRAP_SERVERS to run against an existing cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.runtime.broker import kafka_for_tests


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with kafka_for_tests() as bootstrap:
        yield bootstrap
