"""How long a request's task may run: as long as its client says it waits, within the deployment's
`SWITCHYARD_REQUEST_TIMEOUT_MAX_S`; the gateway's own bounds when it says nothing.

A reasoning model may think for minutes before its first word, and an answer not streamed shows nothing
until it is whole, so the default bounds (the executor's 110 s for all of a task's calls, 60 s for one)
would cut answers that the client, calling the provider directly, would have waited for. Clients say how
long they wait: the official OpenAI and Anthropic SDKs send their read timeout on every request
(`x-stainless-read-timeout`, and `x-stainless-timeout` from Anthropic's: 600 s unless the caller set
another), Google's GenAI SDKs theirs when one is set (`X-Server-Timeout`), and any client may send
`x-switchyard-timeout` (seconds; it wins over the others). A task so bounded carries its limit
(`TaskSubmitted.timeout_s`): the executor gives all its calls that long together, one call as long
when that is longer than its own deadline (a shorter one keeps its per-call limit and fallbacks), and
cuts a little before the gateway stops waiting, so that its cut, with its reason, is what the client reads.
A shorter limit shortens the task too: nothing runs on after its client stopped waiting.

Both bounds count from the request's arrival, as its client's timer does: what the request spent in this
gateway before its task was published (waiting for room in the intake, its body read, guardrails, the cache,
admission) is spent of both, and a request whose client's wait is over by then is not run (504). The
executor counts the task's bound from `submitted_at` (its time queued on the bus counts too). A task nobody
waits for on a connection (`unattended`: the task API, a batch line) may queue: its bound counts from its
start (`timeout_from: started`), and its `deadline` is the end of the task API's following of it
(SWITCHYARD_ASYNC_TASK_TIMEOUT_S), after which its result is never read.

The trade-off, documented in the README: a provider that accepts a call and never answers is waited for
as long as the client waits (as it would be without the gateway) before the task falls back to another
model; a deployment that prefers fast fallbacks over long answers lowers the maximum."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.errors import InvalidRequest, TaskTimeout

HEADER = "x-switchyard-timeout"
# What the SDKs send of their own accord, in order of preference (the read timeout is the wait for an
# answer not streamed, and for a stream's first bytes: what the task's bound is).
SDK_HEADERS = ("x-stainless-read-timeout", "x-stainless-timeout", "x-server-timeout")
# The executor's bound ends this much (at most a tenth of the whole) before the gateway's wait.
MARGIN_S = 10.0


@dataclass(frozen=True, slots=True)
class Wait:
    """How long the gateway waits for a task's answer (a stream: its first output), and the bound its task
    carries to the executor (None: the executor's own), both from `since` (`time.perf_counter`: when the
    request arrived)."""

    gateway_s: float
    task_s: float | None
    since: float = field(default_factory=time.perf_counter)

    def left(self, *, now: float | None = None) -> float:
        """What is left of the gateway's wait (never less than a millisecond: a task published is waited
        for, if only to record its timeout)."""
        return max(self.gateway_s - self._spent(now), 0.001)

    def task_left(self, *, now: float | None = None) -> float | None:
        """The task's bound as from now (None: the executor's own); TaskTimeout when nothing is left of it,
        the request having spent its client's wait in this gateway: its task is not published."""
        if self.task_s is None:
            spent = self._spent(now)
            if spent >= self.gateway_s:
                raise self._over(spent, self.gateway_s)
            return None
        spent = self._spent(now)
        if spent >= self.task_s:
            raise self._over(spent, self.gateway_s)
        return self.task_s - spent

    def idle_s(self, own_s: float) -> float:
        """How long a stream that has begun may be silent before the gateway ends it: its client's wait,
        when it said one (its SDK's read timeout bounds each read, not only the first), never less than the
        gateway's own bound (`own_s`); the executor's idle limit ends it a little before, with its reason."""
        return own_s if self.task_s is None else max(own_s, self.gateway_s)

    def _spent(self, now: float | None) -> float:
        return (time.perf_counter() if now is None else now) - self.since

    @staticmethod
    def _over(spent: float, wait_s: float) -> TaskTimeout:
        return TaskTimeout(
            f"The request spent {spent:.1f} s in the gateway (waiting for room for its body, read and "
            f"admitted) of the {wait_s:g} s its client waits; it was not run"
        )


def declared(headers: Mapping[str, str]) -> float | None:
    """The seconds the client says it waits: `x-switchyard-timeout` (400 unless a positive number), else
    its SDK's header (ignored unless a positive number), else None."""
    own = _own(headers)
    if own is not None:
        return own
    for name in SDK_HEADERS:
        if (value := headers.get(name)) is not None and (seconds := _seconds(value)) is not None:
            return seconds
    return None


def wait_for(headers: Mapping[str, str], settings: GatewaySettings, *, since: float) -> Wait:
    """A request answered on its connection (whole or streamed), arrived at `since`: the client's wait,
    within the maximum."""
    asked = declared(headers)
    if asked is None:
        return Wait(settings.task_timeout_s, None, since)
    seconds = min(asked, settings.request_timeout_max_s)
    return Wait(seconds, seconds - min(MARGIN_S, seconds / 10), since)


def unattended(headers: Mapping[str, str], settings: GatewaySettings) -> float:
    """The bound of a task nobody waits for on a connection (the task API, a batch's line: read later):
    what its submitter said in `x-switchyard-timeout`, else the maximum, since its answer is read whenever
    it is done. Not its SDK's timeout: that is its wait for the submission's answer (202), not the task's."""
    asked = _own(headers)
    return min(asked if asked is not None else math.inf, settings.request_timeout_max_s)


def _own(headers: Mapping[str, str]) -> float | None:
    """`x-switchyard-timeout` in seconds (400 unless a positive number), or None when it is absent."""
    own = headers.get(HEADER)
    if own is None:
        return None
    seconds = _seconds(own)
    if seconds is None:
        raise InvalidRequest(f"{HEADER} must be a positive number of seconds, got {own[:40]!r}", param=HEADER)
    return seconds


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None
