"""kv_guard's marks, as measured on nats-server 2.15 (tests/integration/common/test_kv_guard.py): what the
server stores for an API answer sent to a KV subject is forged; what a writer puts, deletes or purges is
not."""

from __future__ import annotations

import pytest

from switchyard.common.kv_guard import forged, stamped

DIRECT_GET = {
    "Nats-Stream": "KV_switchyard-breakers",
    "Nats-Subject": "$KV.switchyard-breakers.k",
    "Nats-Sequence": "1",
    "Nats-Time-Stamp": "2026-12-07T00:53:32.155552712Z",
}


@pytest.mark.parametrize(
    ("headers", "value"),
    [
        (DIRECT_GET, b'{"tenant_id": "acme", "status": "active"}'),  # a direct get's answer
        ({**DIRECT_GET, "KV-Operation": "DEL"}, b""),  # ... of a deleted key
        (
            {"Nats-Num-Pending": "0", "Nats-Last-Sequence": "1", "Nats-UpTo-Sequence": "1"},
            None,
        ),  # a batch's end
        (None, None),  # a miss (its 404 status line is not kept)
        (None, b""),
        (None, b'{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0}'),  # another API answer
        ({"Status": "404"}, b""),
    ],
)
def test_the_servers_answers_are_forged(headers: dict[str, str] | None, value: bytes | None) -> None:
    assert forged(headers, value)


@pytest.mark.parametrize(
    ("headers", "value"),
    [
        (None, b'{"tenant_id": "acme", "status": "active"}'),  # a put
        (None, b"1796605491.92"),
        ({"KV-Operation": "DEL"}, b""),  # a delete
        ({"KV-Operation": "PURGE", "Nats-Rollup": "sub"}, b""),  # a purge
        ({"Nats-Marker-Reason": "MaxAge"}, b""),  # an expiry's marker (nats-server 2.11+)
    ],
)
def test_a_writers_entries_are_not(headers: dict[str, str] | None, value: bytes | None) -> None:
    assert not forged(headers, value)


def test_stamped_is_the_server_headers_alone_whatever_the_value() -> None:
    """An object's chunk (objects.py): the server's headers mark it; a chunk may well begin with the API's
    envelope (a file of API answers), and a writer's meta carries `Nats-Rollup` alone."""
    assert stamped({**DIRECT_GET, "Nats-Rollup": "sub"})
    assert not stamped(None)
    assert not stamped({})
    assert not stamped({"Nats-Rollup": "sub"})
