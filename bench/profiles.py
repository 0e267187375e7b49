"""Sampling profiles of benchmark contenders (py-spy), summarised as top frames.

    python -m bench.profiles FILE.txt [--top 15]

``bench.compare --profile DIR`` attaches ``py-spy record --idle --format raw`` to
each contender; this turns the collapsed stacks into the two tables a reader
needs: where the time is spent (self, by function) and what it is spent under
(inclusive, by function). Idle samples are kept on purpose: a stream processor
waiting in its event loop is the finding, not noise (issue #5).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME_LINE = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    """``apply (streams/engine/engine.py:340)`` -> ``apply (streams/engine/engine.py)``,
    with site-packages and interpreter prefixes cut."""
    frame = _FRAME_LINE.sub(")", frame)
    return re.sub(r"\(.*(site-packages|lib/python3\.\d+)/", "(", frame)


def summarise(raw: str, top: int = 15) -> dict[str, object]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        stack, n = m.group(1), int(m.group(2))
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        self_time[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    def table(c: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in c.most_common(top)]
    return {"samples": total, "self_percent": table(self_time),
            "inclusive_percent": table(inclusive)}


def record(pid: int, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` until it exits; the caller waits for the returned process."""
    return subprocess.Popen(
        [_py_spy(), "record", "--pid", str(pid), "--rate", str(rate), "--idle",
         "--nonblocking", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


def render(name: str, summary: dict[str, object]) -> str:
    lines = [f"{name}: {summary['samples']} samples"]
    for title in ("self_percent", "inclusive_percent"):
        lines.append(f"  {title.split('_')[0]}:")
        for frame, pct in summary[title]:  # type: ignore[attr-defined]
            lines.append(f"    {pct:5.1f} %  {frame}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    for path in args.files:
        print(render(path.stem, summarise(path.read_text(), args.top)))


if __name__ == "__main__":
    main()
