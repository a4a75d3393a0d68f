"""Settling a request's admission when nobody waits for its task's answer any more, and the errors a
stream's wait before its response starts ends with (`opened`): the task then is followed or cancelled,
and its admission settled at its outcome."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable
from typing import TypeVar

from starlette.datastructures import State

from switchyard.common.events import TaskSubmitted
from switchyard.gateway import overhead
from switchyard.gateway.admission import Pass
from switchyard.gateway.errors import GatewayStopping, TaskTimeout
from switchyard.gateway.gone import CUT
from switchyard.gateway.state import Gateway
from switchyard.gateway.stopping import cut
from switchyard.gateway.tasks import Stopped

log = logging.getLogger(__name__)
T = TypeVar("T")


def settle_later(gw: Gateway, task: TaskSubmitted, admitted: Pass, *, cancel: bool) -> None:
    """Nobody waits for the task's answer any more: its client left (`cancel`: the task is cancelled on
    the bus) or it timed out (the executor hears the timeout). Its admission is settled at what the task
    was still charged (the text generated before the cut), once its outcome says."""
    settle = functools.partial(gw.admission.settle_with, admitted)
    if cancel:
        gw.tasks.abandon(task, then=settle)
    else:
        gw.tasks.follow(task, then=settle)


def stream_ended(
    gw: Gateway, task: TaskSubmitted, admitted: Pass, *, ended: bool, state: State, started: float
) -> None:
    """A stream's response is over (`ended`: sent to its end). Without its outcome, the client went away
    mid-answer or the gateway's stop ended it (the task is stopped), or the stream timed out or broke; a
    gap (a redelivered run starting its answer again) ended a stream that task may still run for up to the
    stream cap, for nobody: it is stopped too. Its admission is settled at the outcome; an answer sent to
    its end notes its own time for the middleware (`overhead.note_stream`)."""
    if admitted.outcome is None and admitted.failure is None:
        stopped = gw.stop.cutting
        if stopped:
            log.warning(CUT)
        settle_later(gw, task, admitted, cancel=not ended or stopped or admitted.gap)
    else:
        gw.admission.settle_soon(admitted)
    if ended and admitted.outcome is not None:
        overhead.note_stream(state, started, admitted.outcome)


async def opened(gw: Gateway, task: TaskSubmitted, admitted: Pass, opening: Awaitable[T]) -> T:
    """`opening` (a stream's wait before its response starts), its errors settling the admission: a
    timeout follows the task, the gateway's stop or a cut request cancels it, any other (its failure as
    an HTTP error) settles it now."""
    try:
        return await opening
    except TaskTimeout:
        settle_later(gw, task, admitted, cancel=False)
        raise
    except Stopped:  # the gateway is stopping before the response started: stop the task
        settle_later(gw, task, admitted, cancel=True)
        log.warning(CUT)
        raise GatewayStopping() from None
    except asyncio.CancelledError:  # the request was cut (the server's graceful stop ran out): stop the task
        settle_later(gw, task, admitted, cancel=True)
        raise cut(CUT) from None
    except BaseException:
        gw.admission.settle_soon(admitted)
        raise
