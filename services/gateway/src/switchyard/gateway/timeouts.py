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

The trade-off, documented in the README: a provider that accepts a call and never answers is waited for
as long as the client waits (as it would be without the gateway) before the task falls back to another
model; a deployment that prefers fast fallbacks over long answers lowers the maximum."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.errors import InvalidRequest

HEADER = "x-switchyard-timeout"
# What the SDKs send of their own accord, in order of preference (the read timeout is the wait for an
# answer not streamed, and for a stream's first bytes: what the task's bound is).
SDK_HEADERS = ("x-stainless-read-timeout", "x-stainless-timeout", "x-server-timeout")
# The executor's bound ends this much (at most a tenth of the whole) before the gateway's wait.
MARGIN_S = 10.0


@dataclass(frozen=True, slots=True)
class Wait:
    """How long the gateway waits for a task's answer (a stream: its first output), and the bound its task
    carries to the executor (None: the executor's own)."""

    gateway_s: float
    task_s: float | None


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


def wait_for(headers: Mapping[str, str], settings: GatewaySettings) -> Wait:
    """A request answered on its connection (whole or streamed): the client's wait, within the maximum."""
    asked = declared(headers)
    if asked is None:
        return Wait(settings.task_timeout_s, None)
    seconds = min(asked, settings.request_timeout_max_s)
    return Wait(seconds, seconds - min(MARGIN_S, seconds / 10))


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
