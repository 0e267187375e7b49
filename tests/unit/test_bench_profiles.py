"""The profile summariser behind the benchmark's "top frames" report."""

from __future__ import annotations

import pytest

from bench.profiles import frame_name, summarise

pytestmark = pytest.mark.unit

RAW = """\
run (a.py:1);loop (a.py:5);select (/usr/lib/python3.13/selectors.py:452) 6
run (a.py:1);loop (a.py:5);apply (streams/engine/engine.py:340) 3
run (a.py:1);loop (a.py:6);apply (streams/engine/engine.py:341) 1
not a sample line
"""


def test_self_and_inclusive_shares_by_function_across_lines() -> None:
    s = summarise(RAW, top=5)
    assert s["samples"] == 10
    assert s["self_percent"] == [("select (selectors.py)", 60.0),
                                 ("apply (streams/engine/engine.py)", 40.0)]
    inclusive = dict(s["inclusive_percent"])  # type: ignore[arg-type]
    assert inclusive["run (a.py)"] == 100.0
    assert inclusive["loop (a.py)"] == 100.0  # two lines of one function count once
    assert inclusive["apply (streams/engine/engine.py)"] == 40.0


def test_frame_names_drop_line_numbers_and_install_prefixes() -> None:
    assert frame_name("f (/x/.venv/lib/python3.13/site-packages/faust/streams.py:12)") == \
        "f (faust/streams.py)"
    assert frame_name("g (streams/worker.py:7)") == "g (streams/worker.py)"
