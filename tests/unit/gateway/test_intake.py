"""The bytes of request bodies a replica takes in at once (`intake.Intake`): a body waits for room, is
refused with 503 `gateway_busy` (Retry-After) when none comes in time, and one body is always taken."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from switchyard.gateway.errors import GatewayBusy
from switchyard.gateway.intake import Intake

MIB = 1024 * 1024


def _request(length: int | None) -> Request:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return Request({"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers})


def test_a_body_waits_for_room_then_is_taken() -> None:
    async def scenario() -> list[str]:
        intake = Intake(10 * MIB, max_body_bytes=8 * MIB, wait_s=5)
        order: list[str] = []

        async def one(name: str, size: int, hold_s: float) -> None:
            async with intake.taking(_request(size)):
                order.append(f"{name} in ({intake.taken // MIB} MiB)")
                await asyncio.sleep(hold_s)
            order.append(f"{name} out")

        first = asyncio.create_task(one("a", 6 * MIB, 0.2))
        await asyncio.sleep(0.01)
        await one("b", 6 * MIB, 0)  # 12 MiB would not fit: b waits for a
        await first
        assert intake.taken == 0
        return order

    assert asyncio.run(scenario()) == ["a in (6 MiB)", "a out", "b in (6 MiB)", "b out"]


def test_no_room_in_time_is_a_503_gateway_busy_with_retry_after() -> None:
    async def scenario() -> GatewayBusy:
        intake = Intake(10 * MIB, max_body_bytes=8 * MIB, wait_s=0.05)
        async with intake.taking(_request(8 * MIB)):
            with pytest.raises(GatewayBusy) as refused:
                async with intake.taking(_request(4 * MIB)):
                    pass
        assert intake.taken == 0  # the refused one took nothing
        return refused.value

    busy = asyncio.run(scenario())
    assert (busy.status, busy.type, busy.code) == (503, "service_unavailable", "gateway_busy")
    assert busy.headers == {"Retry-After": "1"}
    assert "SWITCHYARD_MAX_BODY_BYTES_READING" in busy.message


def test_one_body_is_always_taken_and_a_chunked_body_counts_as_the_largest() -> None:
    async def scenario() -> None:
        intake = Intake(4 * MIB, max_body_bytes=8 * MIB, wait_s=0.05)
        async with intake.taking(_request(None)):  # no Content-Length: counted as 8 MiB, over the budget
            assert intake.taken == 8 * MIB
        async with intake.taking(_request(100 * MIB)):  # declared past the body limit (413 when read)
            assert intake.taken == 8 * MIB
        with pytest.raises(RuntimeError):  # the room is given back on any exit
            async with intake.taking(_request(MIB)):
                raise RuntimeError
        assert intake.taken == 0

    asyncio.run(scenario())


def test_no_limit_takes_everything() -> None:
    async def scenario() -> None:
        intake = Intake(0, max_body_bytes=8 * MIB, wait_s=0.01)
        async with intake.taking(_request(8 * MIB)), intake.taking(_request(8 * MIB)):
            assert intake.taken == 0

    asyncio.run(scenario())
