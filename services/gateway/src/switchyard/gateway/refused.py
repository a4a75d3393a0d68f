"""The bus refusing the gateway's credentials at start, as one line and exit 2 (as `service.run_service`
says it for the other services), not uvicorn's lifespan traceback and "Application startup failed"."""

from __future__ import annotations

import logging

from switchyard.common.bus_auth import BusRefused

REFUSED = f"{BusRefused.__module__}.{BusRefused.__qualname__}: "  # how a traceback names it
STARTUP_FAILED = "Application startup failed. Exiting."


class RefusedAtStart(logging.Filter):
    """Keeps what the refusal said (`said`) and drops uvicorn's records of it; `main` says it and exits."""

    def __init__(self) -> None:
        super().__init__()
        self.said: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        text = record.getMessage()
        if REFUSED in text:
            self.said = text.rsplit(REFUSED, 1)[1].strip().splitlines()[0]
            return False
        if isinstance(record.exc_info, tuple) and isinstance(record.exc_info[1], BusRefused):
            self.said = record.exc_info[1].message
            return False
        return not (self.said is not None and text == STARTUP_FAILED)
