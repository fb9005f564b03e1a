"""Structured logs and the Prometheus endpoint shared by every worker."""

from __future__ import annotations

import json
import logging
import sys
import time

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, start_http_server


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers and ``jq`` want."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(fmt: str = "console", level: str = "INFO") -> None:
    """Configure the root logger once: ``json`` for production, ``console`` for people."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def log_event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields) -> None:
    """Log ``msg`` with structured ``fields`` (JSON keys in json mode, appended text in console mode)."""
    text = msg if not fields else msg + " " + " ".join(f"{k}={v}" for k, v in fields.items())
    logger.log(level, text if not _json_mode() else msg, extra={"fields": fields})


def _json_mode() -> bool:
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def serve_metrics(port: int | None, registry: CollectorRegistry = REGISTRY) -> int | None:
    """Start the Prometheus endpoint on ``port`` (0 = a free port); returns the bound port or None."""
    if port is None:
        return None
    server, _thread = start_http_server(port, addr="127.0.0.1" if port == 0 else "0.0.0.0", registry=registry)
    return server.server_port


__all__ = ["Counter", "Gauge", "JsonFormatter", "log_event", "serve_metrics", "setup_logging"]
