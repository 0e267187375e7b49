"""A real browser for the page tests: Debian's ``chromium``, headless, one process
per call, plus readers for what the pages expose to tests.

Chromium is started with everything that dials out turned off (background
networking, component updates, sync, QUIC) and a fresh profile each time: the
network here is closed, and without those flags chromium waits on connections
that never come. Each call runs in its own process group, killed whole on
timeout, so a hung renderer never outlives the test.

The readers parse the DOM chromium serialises (``--dump-dom``) or the HTML as
rendered, and return the figures behind the pages' ``data-field`` hooks (see
:mod:`streams.pages`): a hook's *figure* is its ``data-value`` attribute when it
has one, else its text.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Final

CHROMIUM_FLAGS: Final[tuple[str, ...]] = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
    "--hide-scrollbars", "--force-device-scale-factor=1",
)
ARTIFACTS: Final = Path(__file__).resolve().parents[1] / "build" / "artifacts" / "pages"
"""Where screenshots are kept (``build/`` is ignored by git, kept by CI as artifacts)."""


class BrowserError(RuntimeError):
    """Chromium is missing, failed, or did not finish in time."""


def chromium_path() -> str:
    """The chromium binary: ``$CHROMIUM``, else ``chromium`` on the PATH."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not found or not os.access(found, os.X_OK):
        raise BrowserError("chromium is not installed: run scripts/install-tools.sh "
                           "(Debian's package 'chromium')")
    return found


def _run(args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """One headless chromium with a throwaway profile; its whole process group is
    killed if it runs past ``timeout`` seconds."""
    with tempfile.TemporaryDirectory(prefix="popstream-chromium-",
                                     ignore_cleanup_errors=True) as profile:
        cmd = [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise BrowserError(f"chromium did not finish in {timeout:g} s: {' '.join(args)}"
                               f"\n{_tail(err)}") from None
    if proc.returncode != 0:
        raise BrowserError(f"chromium exited with {proc.returncode}: {' '.join(args)}"
                           f"\n{_tail(err)}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _tail(stderr: str, lines: int = 15) -> str:
    """The end of chromium's stderr, without its D-Bus complaints (no bus here)."""
    kept = [line for line in stderr.splitlines() if "dbus" not in line.lower()]
    return "\n".join(kept[-lines:])


def dump_dom(url: str, *, width: int = 1280, height: int = 2000,
             timeout: float = 60) -> str:
    """The DOM of ``url`` after it loaded, serialised by chromium."""
    proc = _run([f"--window-size={width},{height}", "--dump-dom", url], timeout=timeout)
    if "<html" not in proc.stdout:
        raise BrowserError(f"chromium printed no DOM for {url}\n{_tail(proc.stderr)}")
    return proc.stdout


def screenshot(url: str, path: Path, *, width: int = 1280, height: int = 2000,
               timeout: float = 60) -> Path:
    """A PNG of ``url`` as a ``width`` x ``height`` window shows it (the top of a
    longer page). Returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    proc = _run([f"--window-size={width},{height}", f"--screenshot={path}", url],
                timeout=timeout)
    if not path.is_file() or path.stat().st_size == 0:
        raise BrowserError(f"chromium wrote no screenshot to {path}\n{_tail(proc.stderr)}")
    return path


# --- PNG facts, stdlib only ---------------------------------------------------------

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class PngFacts:
    width: int
    height: int
    distinct_rows: int
    """Distinct scanlines after decompression (filter byte included). An image of a
    single colour has at most 10 (5 filters, first row or not): more proves content."""


def png_facts(path: Path) -> PngFacts:
    """Width and height from the IHDR chunk, and the distinct scanlines of the
    image data, without a third-party decoder."""
    data = path.read_bytes()
    if data[:8] != PNG_SIGNATURE:
        raise ValueError(f"{path} is not a PNG")
    pos, idat, header = 8, bytearray(), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    if interlace:
        raise ValueError(f"{path}: interlaced PNG")
    stride = 1 + (width * channels * depth + 7) // 8
    raw = zlib.decompress(bytes(idat))
    rows = {raw[i:i + stride] for i in range(0, len(raw), stride)}
    return PngFacts(width, height, len(rows))


# --- the pages' hooks ------------------------------------------------------------

_VOID: Final = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input",
                          "link", "meta", "param", "source", "track", "wbr"})
_SCOPES: Final = {"data-metric": "metric", "data-seller-id": "seller", "data-row": "row"}


@dataclass(frozen=True)
class Hook:
    """An element with ``data-field``: what the page shows for one figure."""

    field: str
    figure: str
    text: str
    scope: Mapping[str, str]
    """The nearest enclosing ``data-metric``, ``data-seller-id`` and ``data-row``."""


@dataclass
class _Open:
    tag: str
    attrs: dict[str, str]
    scope: dict[str, str]
    text: list[str] | None


class PageReader(HTMLParser):
    """Collects the hooks, the chart days and, as a side effect, tag mismatches."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hooks: list[Hook] = []
        self.days: dict[str, list[dict[str, str]]] = {}
        self.problems: list[str] = []
        self._stack: list[_Open] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        scope = dict(self._stack[-1].scope) if self._stack else {}
        scope.update({_SCOPES[k]: v for k, v in values.items() if k in _SCOPES})
        if tag == "g" and "data-date" in values and "metric" in scope:
            self.days.setdefault(scope["metric"], []).append(
                {k: values.get(f"data-{k}", "") for k in ("date", "denominator", "bad")})
        if tag in _VOID:
            return
        self._stack.append(_Open(tag, values, scope,
                                 [] if "data-field" in values else None))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if not self._stack or self._stack[-1].tag != tag:
            self.problems.append(f"</{tag}> closes "
                                 f"<{self._stack[-1].tag if self._stack else 'nothing'}>")
            return
        done = self._stack.pop()
        if done.text is not None:
            text = "".join(done.text)
            figure = done.attrs.get("data-value", text)
            self.hooks.append(Hook(done.attrs["data-field"], figure, text, done.scope))

    def handle_data(self, data: str) -> None:
        for entry in self._stack:
            if entry.text is not None:
                entry.text.append(data)

    def close(self) -> None:
        super().close()
        self.problems.extend(f"<{e.tag}> never closed" for e in self._stack
                             if e.tag not in ("html", "body", "head"))


def read_page(dom: str) -> PageReader:
    """Parse a page (as rendered, or as chromium serialised it)."""
    reader = PageReader()
    reader.feed(dom)
    reader.close()
    return reader


def page_figures(dom: str) -> dict[str, str]:
    """Hooks outside any metric or seller: ``seller_id``, ``as_of`` of a seller page."""
    return {h.field: h.figure for h in read_page(dom).hooks
            if "metric" not in h.scope and "seller" not in h.scope}


def metric_figures(dom: str) -> dict[str, dict[str, str]]:
    """Seller page: metric → field → figure, for each metric section's own figures
    (``numerator``, ``value``, ``status``, ``headroom``, ..., ``orders_total``,
    ``next_cursor``), order rows left out."""
    out: dict[str, dict[str, str]] = {}
    for h in read_page(dom).hooks:
        if "metric" in h.scope and "row" not in h.scope and "seller" not in h.scope:
            out.setdefault(h.scope["metric"], {})[h.field] = h.figure
    return out


def order_rows(dom: str) -> dict[str, list[dict[str, str]]]:
    """Seller page: metric → its order table's rows, each field → figure, in order."""
    rows: dict[str, dict[str, dict[str, str]]] = {}
    for h in read_page(dom).hooks:
        if "metric" in h.scope and "row" in h.scope:
            rows.setdefault(h.scope["metric"], {}).setdefault(h.scope["row"], {})[
                h.field] = h.figure
    return {m: list(by_row.values()) for m, by_row in rows.items()}


def chart_days(dom: str) -> dict[str, list[dict[str, str]]]:
    """Seller page: metric → the chart's days (``date``, ``denominator``, ``bad``)."""
    return read_page(dom).days


def seller_rows(dom: str) -> list[tuple[str, dict[str, dict[str, str]]]]:
    """``/sellers``: each row's seller id (in page order) with its cells, metric →
    field → figure; the row's own figures (``breaches``, ``warnings``,
    ``seller_id``) under the metric ``""``."""
    rows: dict[str, dict[str, dict[str, str]]] = {}
    for h in read_page(dom).hooks:
        if "seller" in h.scope:
            cells = rows.setdefault(h.scope["seller"], {})
            cells.setdefault(h.scope.get("metric", ""), {})[h.field] = h.figure
    return list(rows.items())


# --- what the hooks must show, from the API's documents -------------------------------

def figure(value: object) -> str:
    """What a hook shows for a document value: ``repr`` of a float, the integer or
    string as is, ``—`` for null (as :data:`streams.pages.NULL`)."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def expected_metric_figures(m: Mapping[str, object], healthy: str) -> dict[str, str]:
    """The figures a seller page's section must show for one metric of an explain
    document (``healthy``: the catalog's direction, ``below`` or ``at_least``)."""
    days = m.get("days") or []
    orders = m.get("orders") or []
    assert isinstance(days, list)
    assert isinstance(orders, list)
    out = {key: figure(m.get(key)) for key in (
        "numerator", "denominator", "value", "target", "status", "window_days",
        "lag_days", "headroom", "orders_to_recover", "recovers_on")}
    out["direction"] = "at least" if healthy == "at_least" else "below"
    out["orders_shown"] = str(len(orders))
    out["orders_total"] = str(sum(int(d["bad"]) for d in days))
    if m.get("next_cursor") is not None:
        out["next_cursor"] = figure(m.get("next_cursor"))
    return out


def expected_order_rows(m: Mapping[str, object]) -> list[dict[str, str]]:
    """The rows a seller page's order table must show for one metric."""
    orders = m.get("orders") or []
    assert isinstance(orders, list)
    return [{key: ", ".join(value) if key == "causes" else figure(value)
             for key, value in entry.items()} for entry in orders]


def expected_days(m: Mapping[str, object]) -> list[dict[str, str]]:
    """The days a seller page's chart must show for one metric."""
    days = m.get("days") or []
    assert isinstance(days, list)
    return [{k: str(d[k]) for k in ("date", "denominator", "bad")} for d in days]
