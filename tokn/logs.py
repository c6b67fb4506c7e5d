"""Logging set-up from ``[logging]``: level, text or JSON lines, optional file."""

from __future__ import annotations

import json
import logging
import sys
import time

from tokn.config import Config


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(),
                "logger": record.name, "message": record.getMessage()}
        data.update(getattr(record, "fields", {}) or {})
        return json.dumps(data)


def setup_logging(cfg: Config) -> None:
    root = logging.getLogger("tokn")
    root.setLevel(cfg.logging.level.upper())
    root.handlers.clear()
    if cfg.logging.file:
        from pathlib import Path

        path = Path(cfg.logging.file).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    if cfg.logging.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.propagate = False
