"""A batch's input file, read and checked line by line as OpenAI checks it: each line a JSON object with
a `custom_id` unique in the file, `method` POST, `url` the batch's endpoint, and a `body` the endpoint
itself would accept (its own parsing, and the model catalogue). A file with any bad line fails the whole
batch, listing the first MAX_ERRORS problems with their line numbers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from switchyard.gateway import serving
from switchyard.gateway.errors import APIError, ServiceUnavailable
from switchyard.gateway.schemas import ChatCompletionRequest

MAX_LINES = 50_000  # requests in one file, as OpenAI
MAX_ERRORS = 50  # problems listed in a failed batch's `errors`
# The endpoints a batch may run, by the face that reads and answers them. Embeddings are not here: the
# task API runs chat tasks (an embedding's vectors travel apart from its result and are deleted once read).
FACES: dict[str, serving.Face] = {
    "/v1/chat/completions": serving.OPENAI,
    "/v1/completions": serving.LEGACY,
}


@dataclass(frozen=True, slots=True)
class Line:
    index: int  # among the file's requests, from 0: the task id and the output's order come from it
    number: int  # in the file, from 1 (blank lines count), as errors name it
    custom_id: str
    body: bytes  # the request as the endpoint would have received it
    model: str = ""  # as the line names it


@dataclass
class Checked:
    lines: list[Line]
    errors: list[tuple[str, str, str | None, int | None]]  # code, message, param, line number

    def fail(self, code: str, message: str, param: str | None = None, number: int | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append((code, message, param, number))


def read(content: bytes, *, endpoint: str, max_prompt_chars: int, max_body_bytes: int) -> Checked:
    """The file's requests, parsed as the endpoint parses them (the model not checked yet: `check_models`)."""
    checked = Checked([], [])
    try:
        text = content.decode()
    except UnicodeDecodeError:
        checked.fail("invalid_file", "the file is not UTF-8 text (JSON Lines)")
        return checked
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(checked.lines) + len(checked.errors) >= MAX_LINES:
            checked.fail("too_many_requests", f"the file holds more than {MAX_LINES} requests", None, number)
            break
        line = _line(raw, number, endpoint, len(checked.lines), checked, seen, max_body_bytes)
        if line is None:
            continue
        try:
            model = parse(line, endpoint, max_prompt_chars=max_prompt_chars).model
        except APIError as exc:
            checked.fail(exc.code, exc.message, _param(exc.param), number)
            continue
        checked.lines.append(replace(line, model=model))
    if not checked.lines and not checked.errors:
        checked.fail("empty_file", "the file holds no requests")
    return checked


def _line(
    raw: str, number: int, endpoint: str, index: int, checked: Checked, seen: set[str], max_body_bytes: int
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
    data = orjson.dumps(body)
    if len(data) > max_body_bytes:
        checked.fail(
            "request_too_large", f"the body exceeds the limit of {max_body_bytes} bytes", "body", number
        )
        return None
    return Line(index=index, number=number, custom_id=custom_id, body=data)


def parse(line: Line, endpoint: str, *, max_prompt_chars: int) -> ChatCompletionRequest:
    """A line's request, as its endpoint reads it (its errors raised as the endpoint raises them)."""
    return FACES[endpoint].parse(line.body, max_prompt_chars=max_prompt_chars)


async def check_models(checked: Checked, *, check: Callable[[str], Awaitable[str]]) -> None:
    """Each line's model through the catalogue (`Catalog.check`): one it does not serve fails the file, as
    OpenAI fails a batch naming a model it does not have. Each distinct model is asked about once. A
    catalogue that cannot answer yet (no provider announced) raises: the batch is validated later."""
    verdicts: dict[str, APIError | None] = {}
    for line in checked.lines:
        model = line.model
        if model not in verdicts:
            try:
                await check(model)
                verdicts[model] = None
            except ServiceUnavailable:
                raise
            except APIError as exc:
                verdicts[model] = exc
        if (refused := verdicts[model]) is not None:
            checked.fail(refused.code, refused.message, "body.model", line.number)
    checked.errors.sort(key=lambda error: error[3] or 0)  # by line, as the file reads


def _param(param: str | None) -> str:
    return f"body.{param}" if param else "body"
