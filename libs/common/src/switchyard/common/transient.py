"""Failures a loop that reads the bus now and then expects while a JetStream stream elects its leader (a
node lost, a rolling restart; ~6 s on a 3-node cluster): a request times out, nobody answers it, the server
says JetStream is briefly unavailable. `Failures` logs such an error as one warning line with the error, no
traceback, at most once per `every_s` while it lasts (the next line says how many it left out); any other
error keeps its traceback, every time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import nats.errors
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

# nats.errors.TimeoutError is a TimeoutError; ServiceUnavailableError is the 503 of a JetStream API request
# nobody answered; NoStreamResponseError a publish nobody acked; NoRespondersError a direct get's.
ELECTION_ERRORS: tuple[type[Exception], ...] = (
    TimeoutError,
    ServiceUnavailableError,
    NoStreamResponseError,
    nats.errors.NoRespondersError,
)
EVERY_S = 60.0


class Failures:
    """The failures of one loop, logged to `logger`."""

    def __init__(
        self, logger: logging.Logger, *, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = logger
        self._every_s = every_s
        self._clock = clock
        self._last: float | None = None  # when an expected failure was last logged
        self._left_out = 0

    def failed(self, exc: Exception, message: str, *args: object) -> None:
        """Logs `message` % `args` for `exc`: one warning line for an expected failure, when none was
        logged in the last `every_s`; the traceback for any other."""
        if not isinstance(exc, ELECTION_ERRORS):
            self._log.error(message, *args, exc_info=exc, stacklevel=2)  # the caller's line
            return
        now = self._clock()
        if self._last is not None and now - self._last < self._every_s:
            self._left_out += 1
            return
        left_out = f" ({self._left_out} more since the last such line)" if self._left_out else ""
        self._log.warning(f"{message}: %s{left_out}", *args, said(exc), stacklevel=2)
        self._last, self._left_out = now, 0


def said(exc: BaseException) -> str:
    """The error in a few words (a bare TimeoutError says nothing by itself)."""
    return str(exc) or type(exc).__name__
