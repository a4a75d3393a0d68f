"""A batch's input file as its runner reads it, from the files store in chunks (`objects.chunks`: one held
at a time, however long the reader pauses): checked once (`checked`), then read again for its requests
as they are needed (`requests`), to run them and to write their results. Neither the file nor all its
requests are ever held, so the batch needs its file until it ends (`GONE`: deleted; a file past its
expiry is kept while a batch reads it, `FileStore.in_use`, read `held`: for its batch alone)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from switchyard.gateway.batches import lines
from switchyard.gateway.batches.models import BatchRecord
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.errors import NotFound
from switchyard.gateway.files.errors import FileUnreadable
from switchyard.gateway.files.store import FileStore

GONE = (NotFound, FileUnreadable)  # the input file deleted (or its bytes lost) meanwhile


async def checked(files: FileStore, settings: GatewaySettings, record: BatchRecord) -> lines.Checked:
    """The file's lines checked as its chunks come, keeping only what the check needs (the count, the asks
    of the model catalogue, the problems), not the requests; `file_not_found` when it is gone,
    `file_unreadable` when its bytes cannot be read as stored (lost, or forged on the bus: objects.py)."""
    batch = record.batch
    reader = lines.Reader(
        endpoint=batch.endpoint,
        max_prompt_chars=settings.max_prompt_chars,
        max_body_bytes=settings.max_body_bytes,
        keep=False,
    )
    try:
        _, chunks = await files.open(tenant_id=record.tenant_id, file_id=batch.input_file_id, held=True)
        async for chunk in chunks:
            reader.feed(chunk)
    except NotFound:
        return lines.Checked(
            [], [("file_not_found", f"the input file {batch.input_file_id} is gone", None, None)]
        )
    except FileUnreadable as exc:  # its bytes lost, or forged on the bus: none of its lines runs
        return lines.Checked([], [("file_unreadable", exc.message, "input_file_id", None)])
    return reader.end()


async def requests(
    files: FileStore, record: BatchRecord, *, start: int, max_body_bytes: int
) -> AsyncGenerator[lines.Line, None]:
    """The validated file's requests from index `start` on, each read when it is taken: what is held is
    the request taken and the rest of the chunk (128 KiB) it came in. One of GONE when the file is deleted
    meanwhile."""
    _, chunks = await files.open(tenant_id=record.tenant_id, file_id=record.batch.input_file_id, held=True)
    reader = lines.Requests(start=start, max_body_bytes=max_body_bytes, endpoint=record.batch.endpoint)
    async for chunk in chunks:
        reader.feed(chunk)
        for line in reader.take():
            yield line
    reader.end()
    for line in reader.take():
        yield line


def gone(file_id: str) -> str:
    """What a batch whose input file went before it ended says in its `errors`."""
    return (
        f"the input file {file_id} was deleted before the batch ended: its requests and their "
        "custom_id cannot be read any more, so the batch stopped, the requests still running were "
        "cancelled and no output or error file is written (those counted completed ran and are billed). "
        "Keep a batch's input file until the batch ends"
    )
