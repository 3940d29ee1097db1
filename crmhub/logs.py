"""Structured logs (structlog): console for people, JSON for services, always on stderr.

Log calls pass identifiers and counts, never message bodies or secrets; the
`redact` processor is a second line of defence for keys that must never
leave the process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_KEYS = frozenset({"password", "token", "secret", "auth_token", "client_secret", "access_token",
                         "authorization", "body", "text"})


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask values of keys that hold secrets or message content."""
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    """A logger on the stderr of the moment (tests and CLIs swap sys.stderr)."""
    return structlog.PrintLogger(sys.stderr)


def configure(level: str = "info", fmt: str = "console") -> None:
    """Set up structlog for the process (idempotent)."""
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True), redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
