"""The faust.App popstream builds: configured by popstream's settings only, bound
where POPSTREAM_WEB_HOST says, and serving none of Faust's own endpoints.

Building a faust.App needs no broker; nothing here starts one.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any

import pytest

from streams.runtime.faust_options import (
    FAUST_IMPORT_VARIABLES,
    faust_options,
    harden_worker,
    scrub_faust_environment,
)
from streams.settings import from_env

pytestmark = pytest.mark.unit

# What Kubernetes injects for Services named "web", "broker" and "app" (the
# service-link variables), plus Faust's own unprefixed names set to nonsense.
HOSTILE_ENV = {
    "WEB_PORT": "tcp://10.0.0.11:80",
    "WEB_HOST": "10.0.0.11",
    "WEB_BIND": "10.0.0.11",
    "WEB_TRANSPORT": "unix:///nope",
    "BROKER_URL": "kafka://evil:9092",
    "BROKER_PORT": "tcp://10.0.0.12:9092",
    "APP_DATADIR": "/nonexistent",
    "APP_DEBUG": "1",
    "APP_WEB_ENABLED": "0",
    "APP_WEB_ROUTER_ENABLED": "1",
    "APP_WEB_TABLES_ENABLED": "1",
    "APP_ENV_PREFIX": "EVIL_",
    "EVIL_WEB_PORT": "1",
    "TOPIC_PARTITIONS": "1",
    "STORE": "rocksdb://",
}


def build(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    import faust

    for name, value in {**HOSTILE_ENV, **env}.items():
        monkeypatch.setenv(name, value)
    settings = from_env({"POPSTREAM_WEB_HOST": "127.0.0.1", "POPSTREAM_WEB_PORT": "16066",
                         "POPSTREAM_PARTITIONS": "3"})
    app = faust.App("ps-unit", **faust_options(settings, ["kafka://127.0.0.1:9092"], None))

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.text("")

    return app


def routes(app: Any) -> set[str]:
    web = app.web
    web.blueprints.apply(web)
    return {route.resource.canonical for route in web.web_app.router.routes()}


def test_the_process_environment_does_not_configure_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = build(monkeypatch).conf
    assert conf.web_port == 16066
    assert conf.broker[0].host == "127.0.0.1"
    assert conf.topic_partitions == 3
    assert str(conf.store) == "memory:"
    assert conf.web_enabled is True
    assert conf.debug is False
    assert conf.web_transport.scheme == "tcp"


def test_the_web_server_binds_to_web_host(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = build(monkeypatch).conf
    assert conf.web_bind == "127.0.0.1"  # what aiohttp's TCPSite listens on
    assert conf.web_host == "127.0.0.1"  # what the worker's URL says


def test_faust_serves_no_topology_or_table_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    served = routes(build(monkeypatch))
    assert "/metrics" in served
    assert not {r for r in served if r.startswith(("/router", "/table", "/graph", "/stats",
                                                   "/performance"))}
    assert served <= {"/metrics", "/"}  # "/" is Faust's {"status": "OK"} index


def test_scrub_removes_what_faust_reads_at_import_and_nothing_else() -> None:
    env = {"FAUST_WEB_PORT": "tcp://10.0.0.11:80", "F_LOOP": "gevent", "FAUST_DATADIR": "/x",
           "POPSTREAM_WEB_PORT": "6066", "FAUST_SOMETHING_ELSE": "kept", "PATH": "/bin"}
    removed = scrub_faust_environment(env)
    assert sorted(removed) == ["FAUST_DATADIR", "FAUST_WEB_PORT", "F_LOOP"]
    assert env == {"POPSTREAM_WEB_PORT": "6066", "FAUST_SOMETHING_ELSE": "kept", "PATH": "/bin"}
    assert "FAUST_WEB_PORT" in FAUST_IMPORT_VARIABLES


def test_a_kubernetes_service_named_faust_web_does_not_break_the_import() -> None:
    code = (
        "from streams.runtime.faust_options import scrub_faust_environment\n"
        "scrub_faust_environment()\n"
        "import faust\n"
        "app = faust.App('x', env={}, web_port=6066)\n"
        "print(app.conf.web_port)\n"
    )
    env = {**os.environ, "FAUST_WEB_PORT": "tcp://10.0.0.11:80",
           "FAUST_CONSOLE_PORT": "tcp://10.0.0.13:50101"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "6066"
    unscrubbed = subprocess.run([sys.executable, "-c", "import faust.types._env"], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
    assert unscrubbed.returncode != 0  # what the scrub prevents


def test_hardened_worker_writes_no_cursor_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    import faust

    app = build(monkeypatch)
    out = io.StringIO()
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False,
                          override_logging=False, stdout=out, stderr=out)
    harden_worker(worker)
    assert worker.spinner is None
    worker._on_startup_end_spinner()  # what Faust runs once started
    assert "\x1b" not in out.getvalue()
