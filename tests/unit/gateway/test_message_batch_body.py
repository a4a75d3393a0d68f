"""A message batch create's body read as it arrives (`RequestLines`, `scan.Scanner`): the same lines and the
same refusals as the whole body read at once, however the body is cut into chunks; a body far larger than
what is held while it is read."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, Field, ValidationError

from switchyard.gateway import bounds
from switchyard.gateway.batches.lines import MAX_MESSAGE_LINES, MESSAGES
from switchyard.gateway.bodies import json_object
from switchyard.gateway.errors import APIError, InvalidRequest, RequestTooLarge, invalid_fields
from switchyard.gateway.message_batches.models import BatchRequest
from switchyard.gateway.message_batches.service import RequestLines

MAX_BODY = 4096
OK = {"custom_id": "a", "params": {"model": "auto", "max_tokens": 8}}
TRICKY = {  # every byte the scanner must not take for structure
    "custom_id": "t-1",
    "params": {
        "model": "auto",
        "messages": [{"role": "user", "content": 'a ] } [ { " \\ \\" \\\\ , : é 🙂 \u2028 \n\t'}],
        "metadata": {"nested": [[1, [2.5, -3e2]], {"": [True, False, None]}]},
    },
}


class Whole(BaseModel):
    requests: list[Any] = Field(min_length=1, max_length=MAX_MESSAGE_LINES)


def whole(body: bytes) -> tuple[int, bytes]:
    """The create as the gateway read it before: the body parsed at once, then its requests one by one."""
    try:
        asked = Whole.model_validate(json_object(body))
    except ValidationError as exc:
        raise invalid_fields(exc.errors()) from exc
    seen: dict[str, int] = {}
    lines = []
    for index, item in enumerate(asked.requests):
        try:
            request = BatchRequest.model_validate(item)
        except ValidationError as exc:
            raise invalid_fields(
                [{**e, "loc": ("requests", index, *e["loc"])} for e in exc.errors()]
            ) from exc
        if seen.setdefault(request.custom_id, index) != index:
            raise InvalidRequest("", code="duplicate_custom_id", param=f"requests.{index}.custom_id")
        params = orjson.dumps(request.params)
        if len(params) > MAX_BODY:
            raise RequestTooLarge("", param=f"requests.{index}.params")
        line = {"custom_id": request.custom_id, "method": "POST", "url": MESSAGES}
        lines.append(orjson.dumps({**line, "body": orjson.Fragment(params)}) + b"\n")
    return len(asked.requests), b"".join(lines)


async def streamed(chunks: list[bytes]) -> tuple[int, bytes]:
    lines = RequestLines(_given(chunks), max_body_bytes=MAX_BODY)
    data = b"".join([part async for part in lines.lines()])
    return lines.count, data


async def _given(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def cuts(body: bytes, seed: int) -> Iterator[list[bytes]]:
    """The body whole, byte by byte, in small fixed sizes and at random places."""
    yield [body]
    for size in (1, 2, 3, 7, 64):
        yield [body[i : i + size] for i in range(0, len(body), size)]
    rng = random.Random(seed)
    for _ in range(5):
        at = sorted(rng.sample(range(1, len(body)), min(len(body) - 1, 12)))
        yield [body[a:b] for a, b in zip([0, *at], [*at, len(body)], strict=True)]


async def outcome(chunks: list[bytes]) -> Any:
    try:
        return await streamed(chunks)
    except APIError as exc:
        return (exc.status, exc.code, exc.param)


def old_outcome(body: bytes) -> Any:
    try:
        return whole(body)
    except APIError as exc:
        return (exc.status, exc.code, exc.param)


BODIES = [
    orjson.dumps({"requests": [OK, TRICKY, {**OK, "custom_id": "b"}]}),
    b' \n{ "x" : {"y": ["]", "}"]} , "requests" :\t[ ' + orjson.dumps(TRICKY) + b' ] ,"z":1.5e3}\r\n',
    b'{"requests": [{"custom_id": "e", "params": {"m": "\\ud83d\\ude42 \\u00e9 \\"]"}}]}',
    b'{"\\u0072equests": [{"custom_id": "k", "params": {}}]}',  # `requests`, escaped
    orjson.dumps({"requests": [OK, {"custom_id": "b c", "params": {}}]}),  # a bad custom_id
    orjson.dumps({"requests": [OK, {"custom_id": "b"}]}),  # params missing
    orjson.dumps({"requests": [OK, {"custom_id": "b", "params": 3}]}),
    orjson.dumps({"requests": [OK, 5, "s", [1], None]}),
    orjson.dumps({"requests": [OK, OK]}),  # a custom_id used twice
    orjson.dumps({"requests": [OK, {"custom_id": "big", "params": {"p": "x" * MAX_BODY}}]}),  # 413
    orjson.dumps({"requests": [OK, {"custom_id": "a b", "params": 3}]})[:-3]
    + b",}",  # a bad request, bad JSON
    orjson.dumps({"requests": [OK, OK]}) + b" x",  # a duplicate, then trailing garbage
    orjson.dumps({"requests": [OK]})[:-2],  # cut short
    b'{"requests": [{"custom_id": "s", "params": {"m": "\\ud800"}}]}',  # a lone surrogate: orjson refuses
    b'{"requests": [{"custom_id": "s", "params": {"m": NaN}}]}',
    b'{"requests": [{"custom_id": "s", "params": {"m": "\x01"}}]}',  # a raw control character
    b'{"requests": [{"custom_id": "s", "params": {"m": [1}}]}',
    b'{"requests": [OK]}',
    b'{"requests": []}',
    b'{"requests": 5}',
    b'{"requests": {"custom_id": "a"}}',
    b'{"requests": null}',
    b'{"other": [1, 2]}',
    b"{}",
    b"[1, 2]",
    b'"requests"',
    b"",
    b"   ",
    b"{,}",
    b'{"a" 1}',
    b'{"a": 1,}',
    b'{"requests": [1 2]}',
    b'{"requests": [,]}',
    b'{"requests": [1,]}',
    b"\xef\xbb\xbf{}",
]


@pytest.mark.parametrize("index", range(len(BODIES)))
async def test_a_body_cut_anywhere_reads_as_the_whole_body_did(index: int) -> None:
    body = BODIES[index]
    expected = old_outcome(body)
    for chunks in cuts(body, seed=index) if len(body) > 1 else [[body]]:
        assert await outcome(chunks) == expected, (body, [len(c) for c in chunks])


async def test_a_custom_id_used_again_near_the_end_is_refused_after_the_rest_was_read() -> None:
    requests = [{"custom_id": f"r{i}", "params": {"n": i}} for i in range(3000)]
    requests.append({"custom_id": "r7", "params": {}})
    body = orjson.dumps({"requests": requests})
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    lines = RequestLines(_given(chunks), max_body_bytes=MAX_BODY)
    written = []
    with pytest.raises(InvalidRequest) as caught:
        async for part in lines.lines():
            written.append(part)
    assert (caught.value.code, caught.value.param) == ("duplicate_custom_id", "requests.3000.custom_id")
    assert "requests 7 and 3000" in caught.value.message
    assert (
        2900 < sum(part.count(b"\n") for part in written) < 3000
    )  # written as they came: the store drops them
    assert lines.count == 3001


async def test_a_malformed_tail_refuses_a_body_whose_requests_were_all_good() -> None:
    body = orjson.dumps({"requests": [{"custom_id": f"r{i}", "params": {}} for i in range(500)]})
    for bad in (body[:-2], body + b"}", body + b" ]", body[:-1] + b',"x":', body + b" garbage"):
        with pytest.raises(InvalidRequest) as caught:
            await streamed([bad[i : i + 4096] for i in range(0, len(bad), 4096)])
        assert caught.value.code == "invalid_json", bad[-10:]
        assert caught.value.message.startswith("Request body is not valid JSON: "), bad[-10:]


async def test_what_is_not_kept_is_refused_413() -> None:
    big = "x" * (MAX_BODY + 70 * 1024)  # longer than a line may be: scanned, not kept
    body = orjson.dumps({"requests": [OK, {"custom_id": "b", "params": {"p": big}}]})
    with pytest.raises(RequestTooLarge) as caught:
        await streamed([body[i : i + 4096] for i in range(0, len(body), 4096)])
    assert caught.value.param == "requests.1.params"
    body = orjson.dumps({"notes": big, "requests": [OK]})
    with pytest.raises(RequestTooLarge) as caught:
        await streamed([body])
    assert caught.value.param == "notes"
    body = b'{"requests": [' + orjson.dumps(OK) + b'], "requests": [' + orjson.dumps(OK) + b"]}"
    with pytest.raises(InvalidRequest) as caught:
        await streamed([body])
    assert (caught.value.code, caught.value.param) == ("invalid_value", "requests")


async def test_params_too_deep_to_be_written_as_a_line_are_a_400() -> None:
    """orjson reads 1,024 levels and writes ~254: params nested 300 deep were read, then writing the line
    raised its TypeError, a 500."""
    deep = b'{"a":' * 300 + b"{}" + b"}" * 300
    body = b'{"requests": [' + orjson.dumps(OK) + b', {"custom_id": "b", "params": ' + deep + b"}]}"
    with pytest.raises(InvalidRequest) as caught:
        await streamed([body])
    assert (caught.value.code, caught.value.param) == (bounds.NESTING, "requests.1.params")


async def test_a_body_of_30_mib_is_read_holding_a_small_part_of_it() -> None:
    """The body is made as it is read (the test holds none of it whole), and every line is dropped once
    written, as the store sends it on: what the reading holds at its peak is a chunk and a request or two,
    whatever the body's size (the whole-body read held the body, its parse and its lines: ~4x)."""
    size = 30 * 1024 * 1024
    request = {"custom_id": "r", "params": {"model": "auto", "messages": [{"content": "x" * 1900}]}}

    async def body() -> AsyncIterator[bytes]:
        yield b'{"requests": ['
        sent, pending, i = 0, [], 0
        while sent < size:
            one = orjson.dumps({**request, "custom_id": f"r{i}"}) + b","
            pending.append(one)
            sent, i = sent + len(one), i + 1
            if len(pending) == 32:
                yield b"".join(pending)
                pending = []
        yield b"".join(pending) + orjson.dumps({**request, "custom_id": "last"}) + b"]}"

    lines = RequestLines(body(), max_body_bytes=MAX_BODY)
    written = 0
    tracemalloc.start()
    try:
        async for part in lines.lines():
            written += len(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written > size * 0.95 and lines.count > 15_000
    assert peak < 6 * 1024 * 1024, peak  # a fifth of the body (2.3 MiB when written)


async def test_bodies_mutated_at_random_read_as_the_whole_body_did() -> None:
    """1,000 bodies each a few random bytes off one above (inserted, deleted, replaced by what JSON is made
    of), cut in a random size: the same lines or the same refusal (6,000 of them agreed when written)."""
    rng = random.Random(7)
    alphabet = b'{}[]",:\\ \n0123456789.eE+-tfnrual\xff\xc3\xa9abc'
    for _ in range(1000):
        body = bytearray(rng.choice(BODIES[:10]))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(body))
            change = rng.random()
            if change < 0.4:
                del body[at]
            elif change < 0.8:
                body.insert(at, rng.choice(alphabet))
            else:
                body[at] = rng.choice(alphabet)
        size = rng.choice([1, 3, 17, 1000])
        chunks = [bytes(body[i : i + size]) for i in range(0, len(body), size)]
        assert await outcome(chunks) == old_outcome(bytes(body)), bytes(body)
