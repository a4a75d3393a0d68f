"""A message batch's requests stored as its body arrives (`RequestLines` into `FileStore.put`), on a real
nats-server: the file read back is the lines, checked against its digest; a create refused at any point
(a request refused near the end, a body over its limit, the organisation's share, a bucket full midway)
leaves nothing in the object store, and keeps the error the whole body read at once gave."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import nats
import orjson
import pytest
from nats.js import JetStreamContext

from switchyard.cli.processes import NatsServer
from switchyard.gateway.errors import InvalidRequest, RequestTooLarge
from switchyard.gateway.files.errors import FilesFull, OrganisationFilesFull
from switchyard.gateway.files.models import FileObject
from switchyard.gateway.files.store import STREAM, FileStore, files_bucket
from switchyard.gateway.message_batches.service import RequestLines, requests_file

pytestmark = pytest.mark.integration
MAX_BODY = 64 * 1024


def body(count: int, *, again: int | None = None) -> bytes:
    """`count` requests of ~1 KiB; with `again`, one more whose custom_id is request `again`'s."""
    requests = [{"custom_id": f"r{i}", "params": {"content": "x" * 1000}} for i in range(count)]
    if again is not None:
        requests.append({"custom_id": f"r{again}", "params": {}})
    return orjson.dumps({"requests": requests})


async def chunks(data: bytes, *, limit: int | None = None) -> AsyncIterator[bytes]:
    """`data` as a socket hands it over; past `limit` bytes, the 413 `body_chunks` raises."""
    for start in range(0, len(data), 16 * 1024):
        if limit is not None and start > limit:
            raise RequestTooLarge(f"Request body exceeds the limit of {limit} bytes")
        yield data[start : start + 16 * 1024]


@pytest.fixture
async def store(nats_server: NatsServer) -> AsyncIterator[tuple[JetStreamContext, FileStore]]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        yield js, await files_bucket(js, max_bytes=1024 * 1024)
    finally:
        await nc.close()


async def put(files: FileStore, data: AsyncIterator[bytes], **kwargs: object) -> FileObject:
    lines = RequestLines(data, max_body_bytes=MAX_BODY)
    return await files.put(
        tenant_id="acme",
        purpose="message_batch",
        filename="requests.jsonl",
        data=lines.lines(),
        expires_after_s=3600,
        **kwargs,  # type: ignore[arg-type]
    )


async def nothing_stored(js: JetStreamContext, files: FileStore) -> None:
    state = (await js.stream_info(STREAM)).state
    assert (state.messages, state.bytes) == (0, 0)
    assert await files.usage(tenant_id="acme") == (0, 0)


async def test_the_requests_are_stored_as_they_come(store: tuple[JetStreamContext, FileStore]) -> None:
    js, files = store
    sent = body(600)  # ~600 KiB: five chunks of the store
    stored = await put(files, chunks(sent))
    _, expected = await requests_file(sent, max_body_bytes=MAX_BODY)
    _, parts = await files.open(tenant_id="acme", file_id=stored.id, held=True)  # checks the digest
    assert b"".join([part async for part in parts]) == expected
    assert (await js.stream_info(STREAM)).state.messages > 5


def refusals() -> Iterator[tuple[str, bytes, int | None, type[Exception], str | None]]:
    yield "a custom_id used again at the end", body(700, again=3), None, InvalidRequest, "duplicate_custom_id"
    yield "the body over its limit midway", body(700), 500 * 1024, RequestTooLarge, "request_too_large"
    yield "JSON cut at its end", body(700)[:-1], None, InvalidRequest, "invalid_json"


@pytest.mark.parametrize(("what", "sent", "limit", "error", "code"), list(refusals()))
async def test_a_refused_create_leaves_nothing_stored(
    store: tuple[JetStreamContext, FileStore],
    what: str,
    sent: bytes,
    limit: int | None,
    error: type[Exception],
    code: str,
) -> None:
    js, files = store
    with pytest.raises(error) as caught:
        await put(files, chunks(sent, limit=limit))
    assert getattr(caught.value, "code", None) == code, what
    await nothing_stored(js, files)


async def test_a_create_past_the_share_leaves_nothing_stored(
    store: tuple[JetStreamContext, FileStore],
) -> None:
    js, files = store
    checked: list[str] = []

    async def share_full() -> None:
        checked.append("share")
        raise OrganisationFilesFull("your organisation's files hold ...")

    with pytest.raises(OrganisationFilesFull):
        await put(files, chunks(body(300)), before_described=share_full)
    assert checked == ["share"]
    await nothing_stored(js, files)


async def test_a_bucket_full_midway_refuses_after_what_the_body_says(
    store: tuple[JetStreamContext, FileStore],
) -> None:
    """The bucket holds 1 MiB: a 2 MiB body fills it midway. A body refused for itself is refused so (as
    when the whole body was read before the store was asked); then the share; then 507 storage full."""
    js, files = store
    with pytest.raises(InvalidRequest) as caught:
        await put(files, chunks(body(2000, again=1999 - 1500)))
    assert caught.value.code == "duplicate_custom_id"
    await nothing_stored(js, files)
    checked: list[str] = []

    async def share_ok() -> None:
        checked.append("share")

    with pytest.raises(FilesFull) as full:
        await put(files, chunks(body(2000)), before_described=share_ok)
    assert full.value.code == "files_storage_full" and checked == ["share"]
    await nothing_stored(js, files)
