"""The one place where logging is configured: human text on a terminal, or JSON lines."""

from __future__ import annotations

import logging
import sys
from typing import Final

import orjson

_FORMAT: Final = "%(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        return orjson.dumps(
            {
                "@timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "log.level": record.levelname.lower(),
                "log.logger": record.name,
                "message": record.getMessage(),
            }
        ).decode()


def configure(*, verbose: int = 0, json_logs: bool = False) -> None:
    """Send log records to stderr: warnings by default, more with ``verbose``."""
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(_FORMAT))
    root = logging.getLogger("correlator")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
