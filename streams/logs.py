"""Structured, quiet-by-default logging: one logfmt line per record on stderr.

Default level WARNING for everything (Faust and aiokafka are chatty at INFO);
``--loglevel info`` raises popstream's own loggers only, ``debug`` everything.
"""

from __future__ import annotations

import logging
import sys
import time


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace('"', "'")
        line = (f'ts={ts}.{int(record.msecs):03d}Z level={record.levelname.lower()} '
                f'logger={record.name} msg="{msg}"')
        if record.exc_info:
            line += ' exc="' + self.formatException(record.exc_info).replace("\n", " | ") + '"'
        return line


def setup_logging(level: str = "warning") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = getattr(logging, level.upper(), logging.WARNING)
    root.setLevel(numeric if level == "debug" else logging.WARNING)
    logging.getLogger("popstream").setLevel(numeric)
