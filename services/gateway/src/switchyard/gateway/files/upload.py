"""Reading an upload: OpenAI's multipart/form-data body (`file`, `purpose`, optionally
`expires_after[anchor]` and `expires_after[seconds]`), the file spooled (to disk past 1 MiB) while the
body is counted against the upload limit, then checked as a batch input file (JSONL)."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import IO

import orjson
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from switchyard.gateway.errors import InvalidRequest, RequestTooLarge
from switchyard.gateway.files.models import UPLOAD_PURPOSES

# Room for what a multipart body holds besides the file: boundaries, part headers, the other fields.
OVERHEAD_BYTES = 64 * 1024
MAX_FIELD_BYTES = 1024  # `purpose`, `expires_after[...]`
MAX_FILENAME_CHARS = 255
# A batch input line holds one request: its body (at most SWITCHYARD_MAX_BODY_BYTES, as the endpoint takes
# it) and this much room for the rest (`custom_id`, `method`, `url`). A longer line is refused before it is
# parsed: a 100 MiB line would otherwise be held, then parsed into objects many times its size.
LINE_OVERHEAD_BYTES = 64 * 1024
# Any character below U+0020, DEL, and the C1 controls: never in a file's name (a terminal that prints it
# would obey them).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
EXPIRES_AFTER_S = (3600, 30 * 24 * 3600)  # OpenAI's bounds: an hour to 30 days
# Every purpose OpenAI knows: one of these that is not served is told apart from a typo.
OPENAI_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


@dataclass
class Upload:
    form: FormData
    file: UploadFile
    purpose: str
    expires_after_s: int | None

    @property
    def filename(self) -> str:
        return self.file.filename or ""


async def read(request: Request, *, limit: int) -> Upload:
    """The upload, its file no larger than `limit` bytes (413 `file_too_large` as soon as the body says or
    shows it is larger), its fields checked (400 naming the field). The caller closes `form`."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequest(
            "expected a multipart/form-data body with the fields `file` and `purpose` (as the OpenAI SDK's "
            f"files.create sends), not {content_type or 'no content type'!r}",
            code="invalid_multipart",
        )
    declared = request.headers.get("content-length")
    if declared is not None and digits(declared) and int(declared) > limit + OVERHEAD_BYTES:
        raise too_large(limit)
    parser = MultiPartParser(
        request.headers, _counted(request, limit), max_files=1, max_fields=8, max_part_size=MAX_FIELD_BYTES
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"malformed multipart body: {exc.message}", code="invalid_multipart") from exc
    try:
        return _checked(form, limit)
    except BaseException:
        await form.close()
        raise


def too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"file: larger than the upload limit of {limit} bytes ({limit / 1024**2:g} MiB)",
        code="file_too_large",
        param="file",
    )


async def _counted(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    size = 0
    try:
        async for part in request.stream():
            size += len(part)
            if size > limit + OVERHEAD_BYTES:
                raise too_large(limit)
            yield part
    except ClientDisconnect as exc:
        raise InvalidRequest(
            "the client disconnected while sending the body", code="client_disconnected"
        ) from exc


def _checked(form: FormData, limit: int) -> Upload:
    file = form.get("file")
    if file is None:
        raise InvalidRequest("file: a file is required", code="missing_field", param="file")
    if not isinstance(file, UploadFile):
        raise InvalidRequest(
            "file: must be a file part (with a filename), not a text field", code="invalid_type", param="file"
        )
    if file.size is not None and file.size > limit:
        raise too_large(limit)
    for field in form:
        if len(form.getlist(field)) > 1:  # which one counts would be the parser's whim
            raise InvalidRequest(f"{field}: sent more than once", code="invalid_value", param=field)
    purpose = form.get("purpose")
    if purpose is None:
        raise InvalidRequest("purpose: required (`batch`)", code="missing_field", param="purpose")
    if not isinstance(purpose, str) or purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(_purpose_refused(purpose), code="invalid_value", param="purpose")
    if not file.filename or len(file.filename) > MAX_FILENAME_CHARS or _CONTROL.search(file.filename):
        raise InvalidRequest(
            f"file: needs a filename of 1 to {MAX_FILENAME_CHARS} characters, none of them a control "
            "character",
            code="invalid_value",
            param="file",
        )
    return Upload(form=form, file=file, purpose=purpose, expires_after_s=_expires_after(form))


def _purpose_refused(purpose: object) -> str:
    if purpose == "batch_output":
        return "purpose: `batch_output` files are written by Switchyard (a batch's results); upload `batch`"
    if purpose in OPENAI_PURPOSES:
        return f"purpose: {purpose!r} is not served here; the accepted value is `batch` (for /v1/batches)"
    return f"purpose: {str(purpose)[:40]!r} is not a purpose; the accepted value is `batch`"


def _expires_after(form: FormData) -> int | None:
    anchor, seconds = form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest(
            "expires_after.anchor: must be `created_at`", code="invalid_value", param="expires_after.anchor"
        )
    low, high = EXPIRES_AFTER_S
    if not isinstance(seconds, str) or not digits(seconds) or not low <= int(seconds) <= high:
        raise InvalidRequest(
            f"expires_after.seconds: an integer from {low} to {high}",
            code="invalid_value",
            param="expires_after.seconds",
        )
    return int(seconds)


def digits(raw: str) -> bool:
    """A decimal integer as a client writes one: ASCII digits (`str.isdigit` also takes `²`, which `int`
    refuses), at most 18 of them (`int` refuses more than 4300)."""
    return raw.isascii() and raw.isdigit() and len(raw) <= 18


def max_line_bytes(max_body_bytes: int) -> int:
    """The longest batch input line (its newline aside): a body the endpoint would take, and the rest."""
    return max_body_bytes + LINE_OVERHEAD_BYTES


def check_batch_input(filename: str, data: IO[bytes], *, max_line: int) -> None:
    """A batch input file: named `.jsonl` (as OpenAI requires), not empty, UTF-8, every non-blank line a
    JSON object (each request's fields are the batch's to check) of at most `max_line` bytes. Reads `data`
    line by line from its start (never more than `max_line` bytes at once) and leaves it there. 400 naming
    the first fault (and its line). Blocking: run it in a thread."""
    if not filename.lower().endswith(".jsonl"):
        raise InvalidRequest(
            "file: a batch input file must be JSONL, named `.jsonl`", code="invalid_file_format", param="file"
        )
    data.seek(0)
    requests = line_no = 0
    while line := data.readline(max_line + 1):
        line_no += 1
        if len(line) > max_line and not line.endswith(b"\n"):
            raise InvalidRequest(
                f"file: line {line_no} is longer than {max_line} bytes (a request's body is at most "
                "SWITCHYARD_MAX_BODY_BYTES)",
                code="invalid_jsonl",
                param="file",
            )
        if line.isspace():
            continue
        try:
            value = orjson.loads(line)  # checks UTF-8 too
        except orjson.JSONDecodeError as exc:
            raise _bad_line(line, line_no, exc) from None
        if not isinstance(value, dict):
            message = f"file: line {line_no} is not a JSON object"
            raise InvalidRequest(message, code="invalid_jsonl", param="file")
        requests += 1
    data.seek(0)
    if requests == 0:
        raise InvalidRequest(
            "file: empty; a batch input file holds one request per line", code="empty_file", param="file"
        )


def _bad_line(line: bytes, line_no: int, exc: orjson.JSONDecodeError) -> InvalidRequest:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        message = f"file: line {line_no} is not UTF-8 ({bad.reason} at byte {bad.start})"
    else:
        message = f"file: line {line_no} is not valid JSON ({exc})"
    return InvalidRequest(message, code="invalid_jsonl", param="file")
