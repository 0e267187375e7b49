"""``popstream replay``: the contract other tools call (shape, errors, exit codes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streams.cli import EXIT_NOINPUT, EXIT_STRICT, main
from streams.engine.catalog import default_catalog
from streams.engine.events import decode_event, parse_timestamp
from streams.generator import LogSpec, generate
from tests.reference import reference_report

pytestmark = pytest.mark.unit

AS_OF = "2024-06-15T00:00:00Z"
GOOD = (
    b'{"event_id":"1","type":"order","seller_id":"s1","order_id":"o1",'
    b'"occurred_at":"2024-06-14T00:00:00Z","ship_by":"2024-06-16T00:00:00Z"}'
)


def _write(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_json_output_equals_reference_on_a_generated_log(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    events = list(generate(LogSpec(sellers=20, days=95, end_us=parse_timestamp(AS_OF))))
    lines = [orjson.dumps(e) for e in events]
    path = _write(tmp_path, lines)
    assert main(["replay", str(path), "--as-of", AS_OF, "--format", "json"]) == 0
    out = orjson.loads(capsysbinary.readouterr().out)
    expected = reference_report([decode_event(x) for x in lines], parse_timestamp(AS_OF))
    assert out == {"as_of": AS_OF, "sellers": expected}
    assert len(out["sellers"]) == 20
    some = next(iter(out["sellers"].values()))
    assert set(some) == {m.name for m in default_catalog().metrics}
    assert set(some["perfect_order_percentage"]) == {
        "numerator", "denominator", "value", "target", "breached", "status", "window_days"}


def test_invalid_lines_are_reported_counted_and_written(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = _write(tmp_path, [GOOD, b"{oops", GOOD.replace(b'"order"', b'"teleport"'),
                             b"[" + GOOD + b', {"type": 1}]'])
    rejects = tmp_path / "rejects.jsonl"
    code = main(["replay", str(path), "--as-of", AS_OF, "--format", "json",
                 "--rejects", str(rejects)])
    captured = capsysbinary.readouterr()
    assert code == 0
    err = captured.err.decode()
    assert "line 2: not valid JSON" in err
    assert "line 3: unknown event type" in err
    assert "(at $.type)" in err
    assert "line 4[1]:" in err
    assert "3 rejected" in err
    rows = [orjson.loads(r) for r in rejects.read_bytes().splitlines()]
    assert [r["line"] for r in rows] == ["2", "3", "4[1]"]
    assert rows[0]["raw"] == "{oops"
    out = orjson.loads(captured.out)
    assert out["sellers"]["s1"]["perfect_order_percentage"]["denominator"] == 1


def test_strict_stops_at_the_first_invalid_line(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = _write(tmp_path, [GOOD, b"{oops", GOOD])
    assert main(["replay", str(path), "--as-of", AS_OF, "--strict"]) == EXIT_STRICT
    assert b"--strict: line 2" in capsysbinary.readouterr().err


def test_missing_file_exit_code(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["replay", "/nonexistent.jsonl", "--as-of", AS_OF]) == EXIT_NOINPUT
    assert b"cannot read /nonexistent.jsonl" in capsysbinary.readouterr().err


def test_naive_as_of_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["replay", "-", "--as-of", "2024-06-15T00:00:00"])
    assert info.value.code == 2
    assert "timezone" in capsys.readouterr().err


def test_stdin_and_human_table_through_the_console_script() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", "-", "--as-of", AS_OF],
        input=GOOD + b"\n", capture_output=True, check=True, timeout=60,
    )
    assert b"perfect_order_percentage: 0 in breach" in proc.stdout
    assert b"s1" in proc.stdout
    assert b"1 applied" in proc.stderr
