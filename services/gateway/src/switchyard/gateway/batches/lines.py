"""A batch's input file, read and checked line by line as OpenAI checks it: each line a JSON object with
a `custom_id` unique in the file, `method` POST, `url` the batch's endpoint, and a `body` the endpoint
itself would accept (its own parsing, and the model catalogue). A file with any bad line fails the whole
batch, listing the first MAX_ERRORS problems with their line numbers.

A message batch's file (`MESSAGES`, Anthropic's Message Batches API: `message_batches/`) is written by the
gateway from a create request it checked, so its lines are only counted here: each is read by the
Anthropic face as it runs, and a bad one is that request's `errored` result, not the batch's failure.

A running batch reads its validated file again (`Requests`) to submit its lines and to write their results,
holding only the requests it is at: the file is never held, nor all its requests."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import orjson

from switchyard.gateway import embeddings, faces, messages
from switchyard.gateway.errors import APIError, InvalidRequest, ServiceUnavailable
from switchyard.gateway.files import upload
from switchyard.gateway.schemas import ChatCompletionRequest

MAX_LINES = 50_000  # requests in one file, as OpenAI
MAX_MESSAGE_LINES = 100_000  # requests in one message batch, as Anthropic
MAX_ERRORS = 50  # problems listed in a failed batch's `errors`
# A problem's message as listed: messages echo what a line holds (its custom_id, url, model), and the list
# is stored in the batch's record, which must stay well under the bus's largest message.
MAX_MESSAGE_CHARS = 500
# The chat endpoints a batch may run, by the face that reads and answers them; and embeddings, whose
# lines are embedding tasks (`embeddings.py` reads and answers them).
MESSAGES = "/v1/messages"  # a message batch's lines: never an OpenAI batch's endpoint
FACES: dict[str, faces.Face] = {
    "/v1/chat/completions": faces.OPENAI,
    "/v1/completions": faces.LEGACY,
    MESSAGES: faces.ANTHROPIC,
}
EMBEDDINGS = "/v1/embeddings"
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", EMBEDDINGS)  # an OpenAI batch's
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


class Ask(NamedTuple):
    """What a line asks of the model catalogue: its model, and an embedding line's inputs and length."""

    model: str
    inputs: int = 0
    dimensions: int | None = None


@dataclass
class Checked:
    lines: list[Line]  # the requests, when the reader keeps them (`Reader(keep=True)`)
    errors: list[tuple[str, str, str | None, int | None]]  # code, message, param, line number
    count: int = 0  # the good requests read
    # each distinct ask of the catalogue, with the numbers of its first MAX_ERRORS lines (more are never
    # listed): the models are checked from these, the requests need not be kept
    asks: dict[Ask, list[int]] = field(default_factory=dict)

    def fail(self, code: str, message: str, param: str | None = None, number: int | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            if len(message) > MAX_MESSAGE_CHARS:
                message = message[: MAX_MESSAGE_CHARS - 1] + "…"
            self.errors.append((code, message, param, number))


class _Lines:
    """A file's lines, split as its chunks come (`feed`, then `end`), each handed to `_take` with its number
    (from 1; blank lines count). A line longer than a body and its envelope (`upload.max_line_bytes`) is
    handed as None, unread: its bytes are dropped as they come, so it is never held whole nor parsed."""

    def __init__(self, *, max_body_bytes: int) -> None:
        self._max_body_bytes = max_body_bytes
        self._max_line = upload.max_line_bytes(max_body_bytes)
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

    def _last_line(self) -> None:
        if self._rest or self._too_long:
            self._line_ends()

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
        self._number += 1
        self._take(self._number, None if too_long else raw)

    def _take(self, number: int, raw: bytes | None) -> None:
        raise NotImplementedError


class Reader(_Lines):
    """The file's requests checked, parsed as the endpoint parses them (the model not checked yet:
    `check_models`). Only what the check needs is kept (the count, the asks of the catalogue, the problems);
    the requests too with `keep`."""

    def __init__(
        self, *, endpoint: str, max_prompt_chars: int, max_body_bytes: int, keep: bool = True
    ) -> None:
        super().__init__(max_body_bytes=max_body_bytes)
        self.checked = Checked([], [])
        self._endpoint = endpoint
        self._max_prompt_chars = max_prompt_chars
        self._keep = keep
        self._seen: set[str] = set()

    def end(self) -> Checked:
        self._last_line()
        checked = self.checked
        if not checked.count and not checked.errors:
            checked.fail("empty_file", "the file holds no requests")
        return checked

    def _take(self, number: int, raw: bytes | None) -> None:
        """One line (None: one longer than the limit)."""
        checked = self.checked
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
        most = max_lines(self._endpoint)
        if checked.count + len(checked.errors) >= most:
            checked.fail("too_many_requests", f"the file holds more than {most} requests", None, number)
            self._stopped = True
            return
        endpoint = self._endpoint
        line = _line(raw, number, endpoint, checked.count, checked, self._seen, self._max_body_bytes)
        if line is None:
            return
        if endpoint == MESSAGES:  # read as each runs (`parse`): a bad one is its own error
            checked.count += 1
            if self._keep:
                checked.lines.append(line)
            return
        try:
            parsed = parse(
                line, endpoint, max_prompt_chars=self._max_prompt_chars, max_body_bytes=self._max_body_bytes
            )
        except APIError as exc:
            checked.fail(exc.code, exc.message, _param(exc.param), number)
            return
        ask = Ask(parsed.model)
        if isinstance(parsed, embeddings.Embeddings):
            ask = Ask(parsed.model, len(parsed.inputs), parsed.dimensions)
        checked.count += 1
        numbers = checked.asks.setdefault(ask, [])
        if len(numbers) < MAX_ERRORS:
            numbers.append(number)
        if self._keep:
            checked.lines.append(replace(line, model=ask.model, inputs=ask.inputs, dimensions=ask.dimensions))


class Requests(_Lines):
    """A validated file's requests read again, from the one at index `start` on, each parsed only when it
    is taken (`take`): a running batch holds the requests it runs and a chunk's worth of lines, never the
    file. Every non-blank line of a validated file is a request, so the lines before `start` are counted,
    not parsed. A line that does not read as it did (it cannot, the file being immutable, unless the limits
    were lowered since) is still a request at its index, with an empty body: its submission fails."""

    def __init__(self, *, start: int, max_body_bytes: int, endpoint: str = "") -> None:
        super().__init__(max_body_bytes=max_body_bytes)
        self._start = start
        self._max_lines = max_lines(endpoint)
        self._index = 0
        self._read: deque[tuple[int, int, bytes | None]] = deque()  # index, number, raw: not taken yet

    def end(self) -> None:
        self._last_line()

    def take(self) -> Iterator[Line]:
        """The requests read so far and not taken yet, in order."""
        while self._read:
            index, number, raw = self._read.popleft()
            yield _again(raw, index, number)

    def _take(self, number: int, raw: bytes | None) -> None:
        if raw is not None and not raw.strip():
            return
        index, self._index = self._index, self._index + 1
        if index >= self._max_lines:  # a file never validated (its batch cancelled first): read no further
            self._stopped = True
        elif index >= self._start:
            self._read.append((index, number, raw))


def max_lines(endpoint: str) -> int:
    return MAX_MESSAGE_LINES if endpoint == MESSAGES else MAX_LINES


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
    if body.get("stream") is True and endpoint != MESSAGES:  # a message's: its error (`parse`)
        checked.fail(
            "invalid_value",
            "streaming is not supported in a batch: leave `stream` out",
            "body.stream",
            number,
        )
        return None
    data = _body(body)
    if len(data) > max_body_bytes:
        checked.fail(
            "request_too_large", f"the body exceeds the limit of {max_body_bytes} bytes", "body", number
        )
        return None
    return Line(index=index, number=number, custom_id=custom_id, body=data)


def _again(raw: bytes | None, index: int, number: int) -> Line:
    """A validated line's request, as `_line` read it."""
    try:
        obj: Any = orjson.loads(raw or b"")
        return Line(index=index, number=number, custom_id=str(obj["custom_id"]), body=_body(obj["body"]))
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return Line(index=index, number=number, custom_id="", body=b"")


def _body(body: object) -> bytes:
    # A copy: the bytes orjson returns hold its whole write buffer (16 KiB for a 2 KB body, measured), which
    # a line kept a while (running, or many of them in `Reader(keep=True)`) would hold with it.
    return memoryview(orjson.dumps(body)).tobytes()


def parse(
    line: Line, endpoint: str, *, max_prompt_chars: int, max_body_bytes: int, aliases: Collection[str] = ()
) -> Parsed:
    """A line's request, as its endpoint reads it (its errors raised as the endpoint raises them; a message
    line's bare model name that is one of the policy's `aliases` stays the alias, as on /v1/messages)."""
    if endpoint == EMBEDDINGS:
        return embeddings.parse_request(
            line.body, max_prompt_chars=max_prompt_chars, max_text_bytes=max_body_bytes
        )
    if endpoint == MESSAGES and _streams(line.body):
        raise InvalidRequest(
            "streaming is not supported in a message batch: leave `stream` out",
            code="invalid_value",
            param="stream",
        )
    if endpoint == MESSAGES:
        return messages.parse_request(line.body, max_prompt_chars=max_prompt_chars, aliases=aliases)
    return FACES[endpoint].parse(line.body, max_prompt_chars=max_prompt_chars)


def _streams(body: bytes) -> bool:
    try:
        obj: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False  # the face's parser says what is wrong with it
    return isinstance(obj, dict) and obj.get("stream") is True


async def check_models(checked: Checked, *, check: Callable[[Ask], Awaitable[str]]) -> None:
    """Each distinct ask (a model, and an embedding line's inputs and length) through the catalogue, once
    (`Catalog.check`; `check_embedding` for embeddings): one it does not serve fails the file at each of
    its lines, as OpenAI fails a batch naming a model it does not have. A catalogue that cannot answer yet
    (no provider announced) raises: the batch is validated later."""
    refused: list[tuple[int, APIError]] = []
    for ask, numbers in checked.asks.items():
        try:
            await check(ask)
        except ServiceUnavailable:
            raise
        except APIError as exc:
            refused.extend((number, exc) for number in numbers)
    for number, refusal in sorted(refused, key=lambda found: found[0]):
        checked.fail(refusal.code, refusal.message, _param(refusal.param or "model"), number)
    checked.errors.sort(key=lambda error: error[3] or 0)  # by line, as the file reads


def _param(param: str | None) -> str:
    return f"body.{param}" if param else "body"
