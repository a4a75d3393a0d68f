"""Logging setup: structlog over the standard library, with secrets redacted before anything is written."""

from __future__ import annotations

import logging
import re
import sys
from contextlib import AbstractContextManager
from typing import Any

import structlog

from switchyard.common import tracing

_SECRET_PATTERNS = (
    # a key quoted masked, its ends shown: OpenAI's 401 says "Incorrect API key provided: sk-WRQsP****xQBt".
    # First: the `sk-` rule would take a long enough head and leave the tail.
    re.compile(r"[A-Za-z0-9_\-]+\*{4,}[A-Za-z0-9_\-]*"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),  # OpenAI-style and our own keys
    re.compile(r"\bsy_[A-Za-z0-9]{6,}_[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bAIza[A-Za-z0-9_\-]{35}"),  # Google API keys (Gemini)
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"(?i)(x-(?:goog-)?api-key[\"':\s=]+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"([?&]key=)[^&\s'\"]+"),  # a key in a URL (Gemini's `?key=`), as HTTP errors quote URLs
    # a URL's password (`nats://user:password@host`, as SWITCHYARD_NATS_URL carries when NATS has users)
    re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]+:)[^\s/@]+(?=@)"),
    # PostgreSQL's DETAIL on a constraint error quotes the row's values (`Key (key_hash)=(...) already
    # exists`, `Failing row contains (...)`), in the error's text that a traceback logs
    re.compile(r"(DETAIL:\s+)[^\n]+"),
)


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
    return text


def _trace_processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The trace and span a line was logged in (tracing.py), so a log line leads to its trace: the
    current span's, or, with tracing off, the caller's context a request or an event brought."""
    context = tracing.current()
    if context is not None:
        for name, value in tracing.ids(context).items():
            event_dict.setdefault(name, value)
    return event_dict


def _redact_processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = ()
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def bound(**values: str) -> AbstractContextManager[None]:
    """What every line logged in this context carries (a request's id), the tasks it starts included;
    unbound when the context ends."""
    return structlog.contextvars.bound_contextvars(**values)


def configure_logging(*, service: str, level: str = "INFO", json: bool = False) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )

    def name_service(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        # Not a context variable: a library's own thread (aiosqlite's worker) does not see those.
        event_dict.setdefault("service", service)
        return event_dict

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        name_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _trace_processor,
        # Tracebacks as plain text, before redaction, so it covers them too; never rich's tracebacks,
        # which print every frame's local variables (request headers with keys, prompts) and cost
        # thousands of lines per failure.
        structlog.processors.format_exc_info,
        _redact_processor,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    # FastStream logs every message at INFO; per-message logs belong at DEBUG.
    logging.getLogger("faststream").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # What libraries write at DEBUG (and INFO) carries what logs must not: database drivers each statement
    # with its parameters (aiosqlite: "executing functools.partial(..., 'SELECT ... WHERE key_hash = ?',
    # ('<hash>',))"; SQLAlchemy's engine at INFO when its logger is enabled), the websockets library every
    # frame's first 75 characters (a Responses WebSocket's prompts), httpcore and hpack/h2 the headers.
    # Never below WARNING, whatever SWITCHYARD_LOG_LEVEL says.
    for name in ("aiosqlite", "sqlalchemy", "asyncpg", "websockets", "httpcore", "hpack", "h2"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
