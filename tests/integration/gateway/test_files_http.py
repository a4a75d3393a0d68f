"""The Files API (`/v1/files`) on a gateway process, a real nats-server and SQLite, through the official
OpenAI SDK where it can send the request (`client.files.create/list/retrieve/content/delete`), raw HTTP for
bodies the SDK never sends. The gateway's upload limit is 256 KiB here (its generic body limit 64 KiB, which
must not apply), its file store 1 MiB and an organisation's share of it 640 KiB or 8 files, so a few
uploads fill them (and a batch is refused at the share)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.gateway.db import migrations
from switchyard.gateway.files import upload
from tests.integration.gateway.harness import Org, auth, gateways, make_org

pytestmark = pytest.mark.integration
MAX_BYTES = 256 * 1024
BUCKET_BYTES = 1024 * 1024
ORG_BYTES = 640 * 1024
ORG_COUNT = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Org, Org]]:
    tmp = tmp_path_factory.mktemp("files")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    asyncio.run(migrations().upgrade(db_url))
    acme = asyncio.run(make_org(db_url, "acme", roles=("member",)))
    other = asyncio.run(make_org(db_url, "other", roles=("member",)))
    env = {
        "SWITCHYARD_FILES_MAX_BYTES": str(MAX_BYTES),
        "SWITCHYARD_FILES_BUCKET_BYTES": str(BUCKET_BYTES),
        "SWITCHYARD_FILES_ORG_BYTES": str(ORG_BYTES),
        "SWITCHYARD_FILES_ORG_COUNT": str(ORG_COUNT),
        "SWITCHYARD_BATCH_LEASE_S": "1",  # a running batch hears its cancellation within a third of this
        "SWITCHYARD_BATCH_SCAN_S": "0.3",
    }
    try:
        with gateways(server, db_url, tmp, env=env) as (base,):
            yield base, acme, other
    finally:
        server.stop()


def _sdk(base: str, org: Org) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=org.keys["member"], max_retries=0, timeout=30)


def _jsonl(size: int) -> bytes:
    """Batch input lines (with a non-ASCII character) up to about `size` bytes."""
    line = b'{"custom_id": "r-%06d", "method": "POST", "url": "/v1/chat/completions", "body": {"x": "%s"}}\n'
    line = line.replace(b"%s", "café".encode())
    count = max(1, size // len(line % 0))
    return b"".join(line % i for i in range(count))


async def test_upload_list_retrieve_content_delete_round_trip(world: tuple[str, Org, Org]) -> None:
    base, acme, other = world
    client, stranger = _sdk(base, acme), _sdk(base, other)
    data = _jsonl(200 * 1024)  # over the generic 64 KiB body limit, under the upload limit
    first = await client.files.create(file=("requests.jsonl", io.BytesIO(data)), purpose="batch")
    assert first.id.startswith("file-") and len(first.id) == 29
    assert (first.object, first.bytes, first.filename, first.purpose) == (
        "file",
        len(data),
        "requests.jsonl",
        "batch",
    )
    # no expires_after: 30 days (SWITCHYARD_FILES_BATCH_EXPIRES_S), as OpenAI's batch files
    assert first.expires_at == first.created_at + 30 * 24 * 3600 and first.status == "processed"
    second = await client.files.create(
        file=("b.jsonl", io.BytesIO(b'{"custom_id": "a"}\n')),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert second.expires_at == second.created_at + 3600

    assert (await client.files.retrieve(first.id)).model_dump() == first.model_dump()
    assert (await client.files.content(first.id)).content == data  # byte-exact
    page = await client.files.list()
    assert [f.id for f in page.data] == [second.id, first.id]  # newest first
    assert page.has_more is False
    one = await client.files.list(limit=1, order="asc")
    assert [f.id for f in one.data] == [first.id] and one.has_more is True
    rest = await client.files.list(limit=1, order="asc", after=first.id)
    assert [f.id for f in rest.data] == [second.id] and rest.has_more is False
    assert (await client.files.list(purpose="batch_output")).data == []

    # another organisation sees nothing of them
    assert (await stranger.files.list()).data == []
    for call in (stranger.files.retrieve, stranger.files.content, stranger.files.delete):
        with pytest.raises(openai.NotFoundError) as missing:
            await call(first.id)  # type: ignore[operator]
        assert missing.value.code == "file_not_found"

    deleted = await client.files.delete(first.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (first.id, "file", True)
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError):
            await call(first.id)  # type: ignore[operator]
    assert [f.id for f in (await client.files.list()).data] == [second.id]
    await client.files.delete(second.id)
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.files.retrieve("file-nothing")
    assert unknown.value.code == "file_not_found"


@pytest.mark.parametrize(
    ("purpose", "says"),
    [("fine-tune", "not served"), ("batch_output", "written by Switchyard"), ("nonsense", "not a purpose")],
)
async def test_a_purpose_other_than_batch_is_refused_naming_batch(
    world: tuple[str, Org, Org], purpose: str, says: str
) -> None:
    base, acme, _ = world
    with pytest.raises(openai.BadRequestError) as refused:
        await _sdk(base, acme).files.create(file=("r.jsonl", io.BytesIO(b"{}\n")), purpose=purpose)  # type: ignore[arg-type]
    assert refused.value.code == "invalid_value" and refused.value.param == "purpose"
    assert says in refused.value.message and "`batch`" in refused.value.message


@pytest.mark.parametrize(
    ("files", "data", "code", "param"),
    [
        (None, {"purpose": "batch"}, "missing_field", "file"),
        ({"file": ("r.jsonl", b"{}\n")}, None, "missing_field", "purpose"),
        (None, {"purpose": "batch", "file": "{}"}, "invalid_type", "file"),
        ({"file": ("r.csv", b"{}\n")}, {"purpose": "batch"}, "invalid_file_format", "file"),
        ({"file": ("r.jsonl", b"{}\n[1]\n")}, {"purpose": "batch"}, "invalid_jsonl", "file"),
        ({"file": ("r.jsonl", b"{}\n{oops\n")}, {"purpose": "batch"}, "invalid_jsonl", "file"),
        ({"file": ("r.jsonl", b'{"a": "\xff"}\n')}, {"purpose": "batch"}, "invalid_jsonl", "file"),
        ({"file": ("r.jsonl", b"\n  \n")}, {"purpose": "batch"}, "empty_file", "file"),
        (
            {"file": ("r.jsonl", b"{}\n")},
            {"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "60"},
            "invalid_value",
            "expires_after.seconds",
        ),
    ],
)
async def test_bad_uploads_get_400_naming_the_field(
    world: tuple[str, Org, Org],
    files: dict[str, object] | None,
    data: dict[str, str] | None,
    code: str,
    param: str,
) -> None:
    base, acme, _ = world
    async with httpx.AsyncClient(base_url=base, headers=auth(acme.keys["member"]), timeout=10) as http:
        if files is None:  # a body that still is multipart
            files = {"unrelated": ("x.txt", b"x")}
        r = await http.post("/v1/files", files=files, data=data)  # type: ignore[arg-type]
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error
    assert error["request_id"] == r.headers["x-request-id"]


async def test_a_body_that_is_not_multipart_gets_400(world: tuple[str, Org, Org]) -> None:
    base, acme, _ = world
    async with httpx.AsyncClient(base_url=base, headers=auth(acme.keys["member"]), timeout=10) as http:
        as_json = await http.post("/v1/files", json={"purpose": "batch"})
        broken = await http.post(
            "/v1/files",
            content=b"--b\r\nnot a part",
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        listing = await http.get("/v1/files", params={"limit": "0"})
        unauthenticated = await http.get("/v1/files", headers={"authorization": ""})
    assert (as_json.status_code, as_json.json()["error"]["code"]) == (400, "invalid_multipart")
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "invalid_multipart")
    assert (listing.status_code, listing.json()["error"]["param"]) == (400, "limit")
    assert unauthenticated.status_code == 401


async def test_an_upload_over_the_limit_gets_413(world: tuple[str, Org, Org]) -> None:
    base, acme, _ = world
    client = _sdk(base, acme)
    with pytest.raises(openai.APIStatusError) as refused:
        await client.files.create(file=("big.jsonl", io.BytesIO(_jsonl(MAX_BYTES + 1024))), purpose="batch")
    assert refused.value.status_code == 413
    assert refused.value.code == "file_too_large" and str(MAX_BYTES) in refused.value.message
    assert (await client.files.list()).data == []


async def test_an_organisation_past_its_share_or_a_full_store_refuses_uploads(
    world: tuple[str, Org, Org],
) -> None:
    base, acme, other = world
    client, stranger = _sdk(base, acme), _sdk(base, other)
    data = _jsonl(200 * 1024)
    mine = [await client.files.create(file=("r.jsonl", io.BytesIO(data)), purpose="batch") for _ in range(3)]
    with pytest.raises(openai.APIStatusError) as share:
        await client.files.create(file=("r.jsonl", io.BytesIO(data)), purpose="batch")
    assert share.value.status_code == 507 and share.value.code == "organization_files_full"
    theirs = []
    with pytest.raises(openai.APIStatusError) as full:
        for _ in range(3):  # the store fills before the other organisation reaches its share
            theirs.append(await stranger.files.create(file=("r.jsonl", io.BytesIO(data)), purpose="batch"))
    assert full.value.status_code == 507 and full.value.code == "files_storage_full"
    assert len((await stranger.files.list()).data) == len(theirs)  # the refused upload left nothing listed
    for file in mine:
        await client.files.delete(file.id)
    again = await stranger.files.create(file=("r.jsonl", io.BytesIO(data)), purpose="batch")
    for file in (*theirs, again):
        await stranger.files.delete(file.id)


async def test_an_organisation_with_its_count_of_files_refuses_uploads(world: tuple[str, Org, Org]) -> None:
    """Tiny files fit the byte share by the million, and every list and upload reads all the organisation's
    descriptions: the count is capped too (SWITCHYARD_FILES_ORG_COUNT)."""
    base, acme, _ = world
    client = _sdk(base, acme)
    held = len((await client.files.list()).data)
    mine = [
        await client.files.create(file=("r.jsonl", io.BytesIO(b"{}\n")), purpose="batch")
        for _ in range(ORG_COUNT - held)
    ]
    with pytest.raises(openai.APIStatusError) as refused:
        await client.files.create(file=("r.jsonl", io.BytesIO(b"{}\n")), purpose="batch")
    assert (refused.value.status_code, refused.value.code) == (507, "organization_files_full")
    assert "SWITCHYARD_FILES_ORG_COUNT" in refused.value.message
    await client.files.delete(mine[0].id)
    mine[0] = await client.files.create(file=("r.jsonl", io.BytesIO(b"{}\n")), purpose="batch")
    for file in mine:
        await client.files.delete(file.id)


async def test_an_organisation_at_its_count_of_files_cannot_create_a_batch(
    world: tuple[str, Org, Org],
) -> None:
    """A batch's output and error files are written whatever the share (its results are never lost), so an
    organisation at its share creates no more batches: else batch after batch would pile up files past it."""
    base, acme, _ = world
    client = _sdk(base, acme)
    held = len((await client.files.list()).data)
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    line = (
        orjson.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": body})
        + b"\n"
    )
    mine = [
        await client.files.create(file=("r.jsonl", io.BytesIO(line)), purpose="batch")
        for _ in range(ORG_COUNT - held)
    ]
    ask = {"input_file_id": mine[0].id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    with pytest.raises(openai.APIStatusError) as refused:
        await client.batches.create(**ask)  # type: ignore[arg-type]
    assert (refused.value.status_code, refused.value.code) == (507, "organization_files_full")
    assert "SWITCHYARD_FILES_ORG_COUNT" in refused.value.message and "output" in refused.value.message
    assert (await client.batches.list()).data == []  # nothing created
    await client.files.delete(mine.pop().id)
    batch = await client.batches.create(**ask)  # type: ignore[arg-type]
    assert batch.status == "validating"
    # back at the share: a batch created before still writes its (error) file when it ends. Nothing answers
    # its line's task here: it runs until cancelled, and ends with the line unfinished.
    mine.append(await client.files.create(file=("r.jsonl", io.BytesIO(line)), purpose="batch"))
    batch = await _batch_until(client, batch.id, "in_progress")
    await client.batches.cancel(batch.id)
    batch = await _batch_until(client, batch.id, "cancelled")
    assert batch.error_file_id is not None
    assert len((await client.files.list()).data) == ORG_COUNT + 1
    for file_id in (batch.error_file_id, *(f.id for f in mine)):
        await client.files.delete(file_id)


def _exactly(size: int) -> bytes:
    """Batch input lines (shorter than the longest line taken) of exactly `size` bytes together."""
    frame = b'{"custom_id": "", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    lines = []
    while size:
        length = min(size, 32 * 1024) if size - 32 * 1024 > len(frame) else size
        lines.append(frame.replace(b'""', b'"' + b"p" * (length - len(frame)) + b'"', 1))
        size -= length
    return b"".join(lines)


async def test_an_organisation_whose_files_hold_its_bytes_cannot_create_a_batch(
    world: tuple[str, Org, Org],
) -> None:
    """The bytes' branch of the batch's refusal: a batch's output has no size yet, so the organisation's
    files may hold no more than under SWITCHYARD_FILES_ORG_BYTES."""
    base, acme, _ = world
    client = _sdk(base, acme)
    assert (await client.files.list()).data == []
    batches = (await client.batches.list()).data
    sizes = [200 * 1024, 200 * 1024, 200 * 1024, ORG_BYTES - 600 * 1024]  # exactly the share, 4 files
    mine = [
        await client.files.create(file=("r.jsonl", io.BytesIO(_exactly(n))), purpose="batch") for n in sizes
    ]
    assert sum(f.bytes for f in mine) == ORG_BYTES
    ask = {"input_file_id": mine[0].id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    async with httpx.AsyncClient(base_url=base, headers=auth(acme.keys["member"]), timeout=10) as http:
        refused = await http.post("/v1/batches", json=ask)
    assert refused.status_code == 507, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("api_error", "organization_files_full", None)
    assert f"hold {ORG_BYTES} of its {ORG_BYTES} bytes (SWITCHYARD_FILES_ORG_BYTES)" in error["message"]
    assert (
        "output and error files" in error["message"]
        and error["request_id"] == refused.headers["x-request-id"]
    )
    assert (await client.batches.list()).data == batches  # nothing created
    await client.files.delete(mine.pop().id)  # under the share again
    batch = await client.batches.create(**ask)  # type: ignore[arg-type]
    await client.batches.cancel(batch.id)
    batch = await _batch_until(client, batch.id, "cancelled")
    for file_id in (batch.error_file_id, *(f.id for f in mine)):
        if file_id is not None:
            await client.files.delete(file_id)


async def _batch_until(client: openai.AsyncOpenAI, batch_id: str, status: str) -> openai.types.Batch:
    for _ in range(100):
        batch = await client.batches.retrieve(batch_id)
        if batch.status == status:
            return batch
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch {batch_id} still {batch.status}, not {status}")


@pytest.mark.parametrize("limit", ["²", "9" * 5000, "9" * 20, "-1", "0"])
async def test_a_limit_that_is_not_a_plain_integer_in_range_is_400_not_500(
    world: tuple[str, Org, Org], limit: str
) -> None:
    """`"²".isdigit()` is true but `int("²")` raises, as does `int` of 5,000 digits: both were 500s."""
    base, acme, _ = world
    async with httpx.AsyncClient(base_url=base, headers=auth(acme.keys["member"])) as http:
        listed = await http.get("/v1/files", params={"limit": limit})
        sent = await http.post(
            "/v1/files",
            files={"file": ("r.jsonl", b"{}\n")},
            data={"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": limit},
        )
    answers = [(listed, "limit"), (sent, "expires_after.seconds")]
    for answer, param in answers[
        : 1 if len(limit) > upload.MAX_FIELD_BYTES else 2
    ]:  # else the part is too large
        assert answer.status_code == 400, answer.text  # for the parser: invalid_multipart
        error = answer.json()["error"]
        assert (error["code"], error["param"]) == ("invalid_value", param) and error["request_id"]
