"""Which engine runs: the native core wherever it is built, the pure-Python one on
request (issue #14: the suite runs against both, so neither may stand in for the
other by accident)."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from streams.engine.engine import Engine, PythonEngine, engine_class
from streams.errors import ConfigError

pytestmark = pytest.mark.unit


def test_the_engine_this_run_asked_for_is_the_one_running() -> None:
    """`make test` runs the suite on the native core, then the engine tests again
    with POPSTREAM_ENGINE=python: a native build that failed to load must not pass
    as native by falling back."""
    if os.environ.get("POPSTREAM_ENGINE") == "python":
        assert Engine is PythonEngine
    elif os.environ.get("POPSTREAM_NO_NATIVE", "") in ("", "0"):
        assert Engine.__name__ == "NativeEngine", "the native core is not built or not loaded"
        assert Engine is engine_class("native")


def test_python_is_always_there_and_a_bad_choice_is_refused() -> None:
    assert engine_class("python") is PythonEngine
    with pytest.raises(ConfigError, match="POPSTREAM_ENGINE must be one of"):
        engine_class("rust")


def test_auto_falls_back_and_native_refuses_when_the_core_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(sys.modules, "streams.engine.native", None)  # import fails
    monkeypatch.delenv("POPSTREAM_NO_NATIVE", raising=False)
    with caplog.at_level(logging.WARNING, logger="popstream.engine"):
        assert engine_class("auto") is PythonEngine
    assert "native engine core is not built" in caplog.text  # a fallback is never silent
    with pytest.raises(ConfigError, match="native engine core is not built"):
        engine_class("native")
