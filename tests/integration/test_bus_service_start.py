"""The suite's `BusService`: a service that never gets ready is stopped by the failed start itself.

Before, `start` raised with the process still running, and since the test never got a service to stop,
the process outlived the test (a billing process orphaned that way was once found by hand).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from switchyard.cli.processes import NatsServer
from tests.support.bus_services import BusService


async def test_a_service_that_never_answers_its_ping_is_stopped(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    service = BusService(
        "billing",
        env={"SWITCHYARD_NATS_URL": nats_server.url},
        log_path=tmp_path / "silent.log",
        module="tests.support.silent_service",
    )
    with pytest.raises(TimeoutError, match="did not answer its ping"):
        await service.start(timeout=1.0)
    assert service.proc is not None
    assert service.proc.poll() is not None, "the process outlived its failed start"
