"""Driving real workers in tests: subprocesses, HTTP probes, and waiting on
conditions (never on fixed sleeps)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from streams.runtime.broker import free_port

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float, what: str,
              interval: float = 0.25) -> T:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last={last!r}")


def sellers_diff(got: dict[str, Any] | None, expected: dict[str, Any], show: int = 5) -> str:
    """What separates a worker's sellers from the reference, in a few lines."""
    if got is None:
        return "no answer from the worker"
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = sorted(s for s in set(got) & set(expected) if got[s] != expected[s])
    lines = [f"{len(missing)} missing {missing[:show]}, {len(extra)} extra {extra[:show]}, "
             f"{len(differ)} differ"]
    for seller in differ[:show]:
        g, e = got[seller], expected[seller]
        cells = {m: (g.get(m), e.get(m)) for m in set(g) | set(e) if g.get(m) != e.get(m)}
        lines.append(f"  {seller}: " + "; ".join(
            f"{m}: got {a} expected {b}" for m, (a, b) in sorted(cells.items())))
    return "\n".join(lines)


def wait_equal(worker: Worker, expected: dict[str, Any], timeout: float, what: str) -> None:
    """``wait_for`` the worker's sellers to equal ``expected``; on timeout, say how
    they differ (a bare ``last=False`` tells nothing about a lost or doubled order)."""
    try:
        wait_for(lambda: worker.sellers() == expected, timeout, what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{sellers_diff(worker.sellers(), expected)}\n"
                             f"log tail:\n{worker.log_tail()}") from None


class Worker:
    """``popstream worker`` in a subprocess with its own port and data dir."""

    def __init__(self, bootstrap: str, env: dict[str, str], data_dir: Path,
                 as_of: str | None, name: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.name = name
        self.log = data_dir / f"{name}.log"
        cmd = [sys.executable, "-m", "streams.cli", "worker", "--web-port", str(self.port),
               "--data-dir", str(data_dir / name), "--loglevel", "info"]
        if as_of:
            cmd += ["--as-of", as_of]
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                body = r.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        return body if path == "/metrics" else orjson.loads(body)

    def sellers(self) -> dict[str, Any] | None:
        """Every seller the worker serves, following ``next_cursor`` page by page."""
        out: dict[str, Any] = {}
        path = "/api/sellers"
        while True:
            doc = self.get(path)
            if doc is None or "sellers" not in doc:
                return None
            out.update(doc["sellers"])
            if doc.get("next_cursor") is None:
                return out
            path = "/api/sellers?cursor=" + urllib.parse.quote(doc["next_cursor"])

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


async def produce(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes]],
                  pace: float | None = None) -> None:
    """Send raw ``(topic, key, value)`` messages, bypassing validation on purpose;
    ``pace`` caps the rate (messages/s) to simulate a live stream."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=5, max_request_size=4 << 20)
    await producer.start()
    try:
        started = time.monotonic()
        for n, (topic, key, value) in enumerate(messages):
            await producer.send(topic, value=value, key=key)
            if pace and n % 500 == 0:
                ahead = n / pace - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 60) -> list[Any]:
    """Every message of ``topic`` from the start, once ``expect`` have arrived."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                out.extend(messages)
    finally:
        await consumer.stop()
    return out


def run(coro: Any) -> Any:
    return asyncio.run(coro)
