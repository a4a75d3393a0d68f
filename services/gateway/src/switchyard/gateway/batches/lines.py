"""A batch's input file, read and checked line by line as OpenAI checks it: each line a JSON object with
a `custom_id` unique in the file, `method` POST, `url` the batch's endpoint, and a `body` the endpoint
itself would accept (its own parsing, and the model catalogue). A file with any bad line fails the whole
batch, listing the first MAX_ERRORS problems with their line numbers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from switchyard.gateway import embeddings, serving
from switchyard.gateway.errors import APIError, ServiceUnavailable
from switchyard.gateway.files import upload
from switchyard.gateway.schemas import ChatCompletionRequest

MAX_LINES = 50_000  # requests in one file, as OpenAI
MAX_ERRORS = 50  # problems listed in a failed batch's `errors`
# A problem's message as listed: messages echo what a line holds (its custom_id, url, model), and the list
# is stored in the batch's record, which must stay well under the bus's largest message.
MAX_MESSAGE_CHARS = 500
# The chat endpoints a batch may run, by the face that reads and answers them; and embeddings, whose
# lines are embedding tasks (`embeddings.py` reads and answers them).
FACES: dict[str, serving.Face] = {
    "/v1/chat/completions": serving.OPENAI,
    "/v1/completions": serving.LEGACY,
}
EMBEDDINGS = "/v1/embeddings"
ENDPOINTS = (*FACES, EMBEDDINGS)
Parsed = ChatCompletionRequest | embeddings.Embeddings


@dataclass(frozen=True, slots=True)
class Line:
    index: int  # among the file's requests, from 0: the task id and the output's order come from it
    number: int  # in the file, from 1 (blank lines count), as errors name it
    custom_id: str
    body: bytes  # the request as the endpoint would have received it
    model: str = ""  # as the line names it
    inputs: int = 0  # an embedding line's: its texts, and the length of vectors it asks for
    dimensions: int | None = None


@dataclass
class Checked:
    lines: list[Line]
    errors: list[tuple[str, str, str | None, int | None]]  # code, message, param, line number

    def fail(self, code: str, message: str, param: str | None = None, number: int | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            if len(message) > MAX_MESSAGE_CHARS:
                message = message[: MAX_MESSAGE_CHARS - 1] + "…"
            self.errors.append((code, message, param, number))


class Reader:
    """The file's requests, parsed as the endpoint parses them (the model not checked yet: `check_models`),
    read as its chunks come (`feed`, then `end`): only the requests are kept, never the whole file. A line
    longer than a body and its envelope (`upload.max_line_bytes`) is refused unread: its bytes are dropped
    as they come, so it is never held whole nor parsed."""

    def __init__(self, *, endpoint: str, max_prompt_chars: int, max_body_bytes: int) -> None:
        self.checked = Checked([], [])
        self._endpoint = endpoint
        self._max_prompt_chars = max_prompt_chars
        self._max_body_bytes = max_body_bytes
        self._max_line = upload.max_line_bytes(max_body_bytes)
        self._seen: set[str] = set()
        self._number = 0
        self._rest: list[bytes] = []  # a line begun in earlier chunks, in pieces (joined once, at its end)
        self._rest_bytes = 0
        self._too_long = False  # the line begun is longer than `_max_line`: its pieces are not kept
        self._stopped = False

    def feed(self, chunk: bytes) -> None:
        if self._stopped:
            return
        *whole, begun = chunk.split(b"\n")
        for piece in whole:
            self._grow(piece)
            self._line_ends()
        self._grow(begun)

    def end(self) -> Checked:
        if self._rest or self._too_long:
            self._line_ends()
        checked = self.checked
        if not checked.lines and not checked.errors:
            checked.fail("empty_file", "the file holds no requests")
        return checked

    def _grow(self, piece: bytes) -> None:
        if self._too_long or not piece:
            return
        self._rest_bytes += len(piece)
        if self._rest_bytes > self._max_line:
            self._too_long = True
            self._rest.clear()
        else:
            self._rest.append(piece)

    def _line_ends(self) -> None:
        raw = self._rest[0] if len(self._rest) == 1 else b"".join(self._rest)
        too_long = self._too_long
        self._rest, self._rest_bytes, self._too_long = [], 0, False
        self._take(None if too_long else raw)

    def _take(self, raw: bytes | None) -> None:
        """One line (None: one longer than the limit)."""
        self._number += 1
        number, checked = self._number, self.checked
        if self._stopped:
            return
        if raw is None:
            message = (
                f"the line is longer than {self._max_line} bytes: a request's body is at most "
                f"{self._max_body_bytes} bytes (SWITCHYARD_MAX_BODY_BYTES)"
            )
            checked.fail("request_too_large", message, None, number)
            return
        if not raw.strip():
            return
        try:
            raw.decode()
        except UnicodeDecodeError:
            checked.fail("invalid_file", "the file is not UTF-8 text (JSON Lines)", None, number)
            self._stopped = True
            return
        if len(checked.lines) + len(checked.errors) >= MAX_LINES:
            checked.fail("too_many_requests", f"the file holds more than {MAX_LINES} requests", None, number)
            self._stopped = True
            return
        endpoint = self._endpoint
        line = _line(raw, number, endpoint, len(checked.lines), checked, self._seen, self._max_body_bytes)
        if line is None:
            return
        try:
            parsed = parse(
                line, endpoint, max_prompt_chars=self._max_prompt_chars, max_body_bytes=self._max_body_bytes
            )
        except APIError as exc:
            checked.fail(exc.code, exc.message, _param(exc.param), number)
            return
        if isinstance(parsed, embeddings.Embeddings):
            line = replace(line, inputs=len(parsed.inputs), dimensions=parsed.dimensions)
        checked.lines.append(replace(line, model=parsed.model))


def read(content: bytes, *, endpoint: str, max_prompt_chars: int, max_body_bytes: int) -> Checked:
    """A whole file's requests (`Reader`)."""
    reader = Reader(endpoint=endpoint, max_prompt_chars=max_prompt_chars, max_body_bytes=max_body_bytes)
    reader.feed(content)
    return reader.end()


def _line(
    raw: bytes, number: int, endpoint: str, index: int, checked: Checked, seen: set[str], max_body_bytes: int
) -> Line | None:
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        checked.fail("invalid_json_line", f"the line is not valid JSON: {exc}", None, number)
        return None
    if not isinstance(obj, dict):
        checked.fail("invalid_json_line", "the line must be a JSON object", None, number)
        return None
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        checked.fail("missing_custom_id", "custom_id must be a non-empty string", "custom_id", number)
        return None
    if custom_id in seen:
        checked.fail(
            "duplicate_custom_id", f"custom_id {custom_id!r} is used more than once", "custom_id", number
        )
        return None
    seen.add(custom_id)
    if obj.get("method") != "POST":
        checked.fail("invalid_method", "method must be POST", "method", number)
        return None
    if obj.get("url") != endpoint:
        checked.fail(
            "mismatched_url",
            f"url must be the batch's endpoint, {endpoint} (got {obj.get('url')!r})",
            "url",
            number,
        )
        return None
    body = obj.get("body")
    if not isinstance(body, dict):
        checked.fail("invalid_body", "body must be a JSON object: the endpoint's request", "body", number)
        return None
    if body.get("stream") is True:
        checked.fail(
            "invalid_value",
            "streaming is not supported in a batch: leave `stream` out",
            "body.stream",
            number,
        )
        return None
    # A copy: the bytes orjson returns hold its whole write buffer (16 KiB for a 2 KB body, measured), and
    # every line's body is kept until the batch ends.
    data = memoryview(orjson.dumps(body)).tobytes()
    if len(data) > max_body_bytes:
        checked.fail(
            "request_too_large", f"the body exceeds the limit of {max_body_bytes} bytes", "body", number
        )
        return None
    return Line(index=index, number=number, custom_id=custom_id, body=data)


def parse(line: Line, endpoint: str, *, max_prompt_chars: int, max_body_bytes: int) -> Parsed:
    """A line's request, as its endpoint reads it (its errors raised as the endpoint raises them)."""
    if endpoint == EMBEDDINGS:
        return embeddings.parse_request(
            line.body, max_prompt_chars=max_prompt_chars, max_text_bytes=max_body_bytes
        )
    return FACES[endpoint].parse(line.body, max_prompt_chars=max_prompt_chars)


async def check_models(checked: Checked, *, check: Callable[[Line], Awaitable[str]]) -> None:
    """Each line's model through the catalogue (`Catalog.check`; an embedding line's `check_embedding`,
    with its inputs and length): one it does not serve fails the file, as OpenAI fails a batch naming a
    model it does not have. Each distinct ask is checked once. A catalogue that cannot answer yet (no
    provider announced) raises: the batch is validated later."""
    verdicts: dict[tuple[str, int, int | None], APIError | None] = {}
    for line in checked.lines:
        asked = (line.model, line.inputs, line.dimensions)
        if asked not in verdicts:
            try:
                await check(line)
                verdicts[asked] = None
            except ServiceUnavailable:
                raise
            except APIError as exc:
                verdicts[asked] = exc
        if (refused := verdicts[asked]) is not None:
            checked.fail(refused.code, refused.message, _param(refused.param or "model"), line.number)
    checked.errors.sort(key=lambda error: error[3] or 0)  # by line, as the file reads


def _param(param: str | None) -> str:
    return f"body.{param}" if param else "body"
