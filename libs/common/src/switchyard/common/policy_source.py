"""The routing policy, re-read when its file changes: no restart needed (the router routes, the gateway
checks model names, aliases and prices, billing charges and the executor limits rates by the policy in
force).

`watch()` (a background task in the service) checks the file's modification time and size every
`check_s` seconds and reloads it when they changed, so every replica follows every good edit;
`current()` also checks, lazily, for users without a background task. A file changed less than `settle_s`
ago is left for a later check: one written in place, in pieces, can be read half-written, and cut at a
section's end it is still a valid policy (without its tenants' limits, say). A new file that does not load
(bad YAML, a failed validation) is logged and counted, and the last good policy stays in force: a typo
must not stop routing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from switchyard.common.background import cancel
from switchyard.common.errors import ConfigurationError
from switchyard.common.policy import DEFAULT_POLICY, Policy, load_policy

log = logging.getLogger(__name__)
OnReload = Callable[[Policy | None, str | None], None]  # (new policy, or None and the error)


class PolicySource:
    def __init__(
        self,
        path: Path | None,
        *,
        check_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_reload: OnReload | None = None,
        settle_s: float = 0.0,
    ) -> None:
        self.path = path or DEFAULT_POLICY
        self._check_s = check_s
        self._settle_s = settle_s
        self._clock = clock
        self._on_reload = on_reload
        self._policy = load_policy(self.path)  # the first load must succeed: fail fast at start
        self._stamp = self._file_stamp()
        self._checked = clock()
        self.last_error: str | None = None
        self._watcher: asyncio.Task[None] | None = None

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> Policy:
        now = self._clock()
        if now - self._checked >= self._check_s:
            self._checked = now
            self.reload_if_changed()
        return self._policy

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self._check_s)
            self._checked = self._clock()
            self.reload_if_changed()

    async def start(self) -> None:
        """Runs `watch()` in the background (a service's setup hook; `stop` is its teardown)."""
        if self._watcher is None:
            self._watcher = asyncio.create_task(self.watch(), name="policy-watch")

    async def stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await cancel(watcher)

    def reload_if_changed(self) -> bool:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        if stamp is not None and time.time_ns() - stamp[0] < self._settle_s * 1e9:
            return False  # maybe still being written: the next check looks again
        self._stamp = stamp
        try:
            policy = load_policy(self.path)
        except ConfigurationError as exc:
            self.last_error = exc.message
            log.error("policy not reloaded, keeping version %s: %s", self._policy.version, exc.message)
            if self._on_reload is not None:
                self._on_reload(None, exc.message)
            return False
        old, self._policy, self.last_error = self._policy, policy, None
        log.info("policy reloaded: %s -> %s (%s)", old.version, policy.version, policy.fingerprint())
        if self._on_reload is not None:
            self._on_reload(policy, None)
        return True


def current_of(policy: Policy | PolicySource) -> Callable[[], Policy]:
    """A getter of the policy in force: a source's current one, or a fixed policy (tests, tools)."""
    if isinstance(policy, PolicySource):
        return policy.current
    return lambda: policy
