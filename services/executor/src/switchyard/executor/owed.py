"""Provider-call records the stream refused through every retry of their publish, published again (same
`Nats-Msg-Id`, so the stream stores each once) until it takes them.

A task's records are sent before its result and confirmed together. If the stream stores the result but
refuses a record for longer than a publish retries (~6 s: a leader election, a full stream), the routed
event is done: acking it or letting it be redelivered, whose handler then finds the result and runs
nothing, cannot bring that record back, and only this process still has it. So it keeps it here, and
retries in the background while the process lives; at shutdown it tries once more and logs what it could
not publish.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from switchyard.common.backlog import Backlog

log = logging.getLogger(__name__)

Confirm = Callable[[], Awaitable[str]]


class OwedRecords:
    def __init__(self) -> None:
        self._owed: list[Confirm] = []
        self._backlog = Backlog(
            self._publish_all, self.__len__, what="provider-call records", first_s=0.5, max_s=10.0
        )

    def __len__(self) -> int:
        return len(self._owed)

    def add(self, confirms: Iterable[Confirm]) -> None:
        """Owes these sends (their `confirm` publishes again with the same id) until the stream has them."""
        self._owed.extend(confirms)
        self._backlog.kick()

    async def _publish_all(self) -> None:
        while self._owed:
            eid = await self._owed[0]()
            self._owed.pop(0)
            log.info("provider-call record %s stored after the stream had refused it", eid)

    async def close(self) -> None:
        """One last attempt, while still connected; what is still refused is logged, then lost."""
        await self._backlog.close()
