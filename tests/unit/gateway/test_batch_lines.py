"""The Batch API's pure parts: the input file's checks (each line's envelope, its body as the endpoint
parses it, the model catalogue), the output and error lines, a task's failure as the endpoint's error,
and a run's progress."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from switchyard.gateway.batches import lines, render
from switchyard.gateway.batches.models import Batch as BatchObject
from switchyard.gateway.batches.models import (
    BatchError,
    BatchErrors,
    BatchRecord,
    CreateBatch,
    LineError,
    RequestCounts,
)
from switchyard.gateway.batches.running import BatchRun, _waits
from switchyard.gateway.errors import APIError, ModelNotFound, RateLimited, ServiceUnavailable
from switchyard.gateway.files import upload
from switchyard.gateway.taskapi.models import TaskError, TaskState

pytestmark = pytest.mark.unit
CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"


def _request(custom_id: str = "a", **body: Any) -> dict[str, Any]:
    request = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **body}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": request}


def _file(*rows: object) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows) + b"\n"


def _read(content: bytes, endpoint: str = CHAT) -> lines.Checked:
    return lines.read(content, endpoint=endpoint, max_prompt_chars=10_000, max_body_bytes=4096)


def test_a_good_file_gives_its_requests_in_order_with_line_numbers() -> None:
    checked = _read(_file(_request("x"), b"", _request("y", model="local/smollm2-135m-instruct")))
    assert checked.errors == []
    assert [(line.index, line.number, line.custom_id, line.model) for line in checked.lines] == [
        (0, 1, "x", "auto"),
        (1, 3, "y", "local/smollm2-135m-instruct"),  # a blank line counts in the numbering, not as a request
    ]
    assert orjson.loads(checked.lines[0].body)["messages"][0]["content"] == "hi"


def test_legacy_completions_lines_are_read_by_that_endpoint() -> None:
    line = {
        "custom_id": "p",
        "method": "POST",
        "url": "/v1/completions",
        "body": {"model": "auto", "prompt": "Hi"},
    }
    assert _read(_file(line), "/v1/completions").errors == []
    assert _read(_file(_request()), "/v1/completions").errors[0][0] == "mismatched_url"


@pytest.mark.parametrize(
    ("row", "code", "param"),
    [
        (b"{not json", "invalid_json_line", None),
        (b"[1, 2]", "invalid_json_line", None),
        ({**_request(), "custom_id": 7}, "missing_custom_id", "custom_id"),
        ({**_request(), "method": "GET"}, "invalid_method", "method"),
        ({**_request(), "url": "/v1/embeddings"}, "mismatched_url", "url"),
        ({**_request(), "body": "hi"}, "invalid_body", "body"),
        (_request(stream=True), "invalid_value", "body.stream"),
        (_request(max_tokens="5"), "invalid_type", "body.max_tokens"),
        ({**_request(), "body": {"model": "auto"}}, "missing_field", "body.messages"),
        (_request(logit_bias={"1": 2}), "unsupported_parameter", "body.logit_bias"),
        (_request(messages=[{"role": "user", "content": "x" * 5000}]), "request_too_large", "body"),
    ],
)
def test_a_bad_line_is_named_with_its_line_number(row: object, code: str, param: str | None) -> None:
    checked = _read(_file(_request("ok"), row))
    assert [(c, p, n) for c, _, p, n in checked.errors] == [(code, param, 2)]
    assert [line.custom_id for line in checked.lines] == ["ok"]


def test_custom_ids_are_unique_and_the_listed_errors_are_capped() -> None:
    dup = _read(_file(_request("a"), _request("a")))
    assert dup.errors[0][0] == "duplicate_custom_id" and dup.errors[0][3] == 2
    many = _read(_file(*[b"{" for _ in range(lines.MAX_ERRORS + 10)]))
    assert len(many.errors) == lines.MAX_ERRORS


def test_empty_oversized_and_binary_files(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _read(b"\n\n").errors[0][0] == "empty_file"
    assert _read(b"\xff\xfe").errors[0][0] == "invalid_file"
    monkeypatch.setattr(lines, "MAX_LINES", 2)
    too_many = _read(_file(_request("a"), _request("b"), _request("c")))
    assert too_many.errors == [("too_many_requests", "the file holds more than 2 requests", None, 3)]


async def test_models_are_checked_once_each_through_the_catalogue() -> None:
    asked: list[str] = []

    async def check(ask: lines.Ask) -> str:
        asked.append(ask.model)
        if ask.model == "nope":
            raise ModelNotFound("The model 'nope' does not exist", param="model")
        return ask.model

    checked = _read(_file(_request("a", model="nope"), b"{", _request("b"), _request("c", model="nope")))
    await lines.check_models(checked, check=check)
    assert asked == ["nope", "auto"]
    assert [(c, p, n) for c, _, p, n in checked.errors] == [
        ("model_not_found", "body.model", 1),
        ("invalid_json_line", None, 2),
        ("model_not_found", "body.model", 4),
    ]

    async def unavailable(ask: lines.Ask) -> str:
        raise ServiceUnavailable("no provider is available yet")

    with pytest.raises(ServiceUnavailable):  # not the file's fault: validated again later
        await lines.check_models(_read(_file(_request())), check=unavailable)


def test_embedding_lines_are_read_as_post_v1_embeddings_reads_them() -> None:
    def row(custom_id: str, **body: Any) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": EMBED, "body": body}

    checked = _read(
        _file(
            row("one", model="local/all-minilm-l6-v2", input="hi"),
            row("two", model="m", input=["a", "b", "c"], dimensions=64, encoding_format="base64"),
            row("ids", model="m", input=[[9906], [1917]]),  # token ids (cl100k), decoded as the endpoint does
            row("empty", model="m", input=[]),
            row("typed", model="m", input="x", dimensions="64"),
            _request("chat"),
        ),
        EMBED,
    )
    assert [(n.custom_id, n.model, n.inputs, n.dimensions) for n in checked.lines] == [
        ("one", "local/all-minilm-l6-v2", 1, None),
        ("two", "m", 3, 64),
        ("ids", "m", 2, None),
    ]
    assert [(c, p, n) for c, _, p, n in checked.errors] == [
        ("invalid_value", "body.input", 4),
        ("invalid_type", "body.dimensions", 5),
        ("mismatched_url", "url", 6),
    ]


def test_a_file_read_in_chunks_is_read_as_a_whole() -> None:
    content = _file(_request("a"), b"", b"{", _request("b", model="local/smollm2-135m-instruct"))
    whole = _read(content)
    for size in (1, 7, 64):
        reader = lines.Reader(endpoint=CHAT, max_prompt_chars=10_000, max_body_bytes=4096)
        for start in range(0, len(content), size):
            reader.feed(content[start : start + size])
        assert reader.end() == whole
    unended = lines.Reader(endpoint=CHAT, max_prompt_chars=10_000, max_body_bytes=4096)
    unended.feed(content.rstrip(b"\n"))  # the last line without its newline
    assert unended.end() == whole
    assert [line.number for line in whole.lines] == [1, 4]


def test_create_request_keeps_openais_metadata_limits() -> None:
    CreateBatch(input_file_id="f", endpoint=CHAT, completion_window="24h", metadata={"k": "v" * 512})
    for metadata in ({f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}):
        with pytest.raises(ValueError):
            CreateBatch(input_file_id="f", endpoint=CHAT, completion_window="24h", metadata=metadata)


def test_output_and_error_lines_in_openais_shape() -> None:
    body = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'
    out = render.succeeded("batch_1", 0, "a", request_id="t1", body=body)
    assert out.endswith(b"\n") and body in out  # the endpoint's answer byte for byte
    parsed = orjson.loads(out)
    assert parsed["id"] == render.line_id("batch_1", 0) and parsed["id"].startswith("batch_req_")
    assert parsed["custom_id"] == "a" and parsed["error"] is None
    assert parsed["response"]["status_code"] == 200 and parsed["response"]["request_id"] == "t1"

    error = LineError(status=429, type="insufficient_quota", code="budget_exceeded", message="no money")
    failed = orjson.loads(render.failed("batch_1", 1, "b", request_id="t2", error=error))
    assert failed["response"] == {
        "status_code": 429,
        "request_id": "t2",
        "body": {
            "error": {
                "message": "no money",
                "type": "insufficient_quota",
                "param": None,
                "code": "budget_exceeded",
                "request_id": "t2",
            }
        },
    }
    expired = orjson.loads(render.unfinished("batch_1", 2, "c", ended="expired"))
    assert expired["response"] is None and expired["error"]["code"] == "batch_expired"
    assert (
        orjson.loads(render.unfinished("batch_1", 2, "c", ended="cancelled"))["error"]["code"]
        == "batch_cancelled"
    )


def test_task_ids_are_derived_from_organisation_batch_and_line() -> None:
    assert render.task_id("t", "batch_1", 0) == render.task_id("t", "batch_1", 0)
    ids = {render.task_id(t, b, n) for t in ("t", "u") for b in ("batch_1", "batch_2") for n in (0, 1)}
    assert len(ids) == 8


def _state(status: str, code: str | None = None) -> TaskState:
    now = datetime.now(UTC)
    error = TaskError(code=code, message="it broke") if code else None
    return TaskState(
        id="t",
        tenant_id="org",
        status=status,
        model="auto",
        created_at=now,
        updated_at=now,
        error=error,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("status", "code", "http", "answered"),
    [
        ("failed", "provider_error", 502, "provider_error"),
        ("failed", "model_not_found", 404, "model_not_found"),
        ("failed", "provider_overloaded", 503, "provider_overloaded"),
        ("failed", "context_length_exceeded", 400, "context_length_exceeded"),
        ("timed_out", None, 504, "task_timeout"),
    ],
)
def test_a_failed_task_is_the_error_its_endpoint_answers(
    status: str, code: str | None, http: int, answered: str
) -> None:
    error = render.task_error(_state(status, code))
    assert (error.status, error.code) == (http, answered)


def test_a_failed_embedding_task_is_the_error_post_v1_embeddings_answers() -> None:
    unavailable = render.task_error(_state("failed", "embedding_result_unavailable"), embedding=True)
    assert (unavailable.status, unavailable.code) == (503, "embedding_result_unavailable")
    too_long = render.task_error(_state("failed", "embedding_dimensions_unsupported"), embedding=True)
    assert (too_long.status, too_long.code, too_long.param) == (400, "invalid_value", "dimensions")
    provider = render.task_error(_state("failed", "provider_error"), embedding=True)
    assert (provider.status, provider.code) == (502, "provider_error")


def test_rate_limits_wait_budgets_fail() -> None:
    assert _waits(RateLimited("slow down", headers={"retry-after": "1"}))
    assert _waits(ServiceUnavailable("the rate limiter is unavailable"))
    assert not _waits(RateLimited("no budget", type_="insufficient_quota", code="budget_exceeded"))
    assert not _waits(RateLimited("too large", retry=False))


def test_progress_counts_the_lines_before_the_first_unknown_result() -> None:
    now = 0
    batch = BatchObject(
        id="batch_1", endpoint=CHAT, input_file_id="f", status="in_progress", created_at=now, expires_at=now
    )
    record = BatchRecord(
        batch=batch,
        tenant_id="org",
        user_id=None,
        api_key_id="k",
        done_below=2,
        below=RequestCounts(completed=1, failed=1),
    )
    run = BatchRun(gw=None, store=None, knobs=None, record=record)  # type: ignore[arg-type]
    run.outcomes.update({2: "completed", 3: "failed", 5: "completed"})
    done_below, below, counts = run._progress(total=7)
    assert done_below == 4  # line 4 still runs
    assert (below.completed, below.failed) == (2, 2)
    assert (counts.total, counts.completed, counts.failed) == (7, 3, 2)


def test_a_line_longer_than_a_request_is_refused_unread_and_the_rest_still_read() -> None:
    """A body the endpoint would take, padded with spaces past a line's limit: refused at its line without
    being held whole (its pieces are dropped as chunks come), and the lines after it are still read."""
    limit = upload.max_line_bytes(4096)
    padded = json.dumps(_request("long"))[:-1].encode() + b" " * limit + b"}"
    content = _file(_request("a"), padded, _request("b"))
    reader = lines.Reader(endpoint=CHAT, max_prompt_chars=10_000, max_body_bytes=4096)
    for start in range(0, len(content), 1000):  # in pieces much smaller than the line
        reader.feed(content[start : start + 1000])
    checked = reader.end()
    assert [line.custom_id for line in checked.lines] == ["a", "b"]
    assert [(code, number) for code, _, _, number in checked.errors] == [("request_too_large", 2)]
    assert f"longer than {limit} bytes" in checked.errors[0][1]
    assert not reader._rest  # nothing of it kept


def test_the_problems_listed_stay_small_whatever_the_lines_hold() -> None:
    """Messages echo a line's custom_id or url: 50 of them 100 KB each would make the batch's record 5 MB,
    which the bus refuses (the batch was then validated again at every scan, failing each time)."""
    big = "x" * 100_000
    rows = [_request(big + str(i)) | {"url": big} for i in range(lines.MAX_ERRORS + 5)]
    checked = lines.read(_file(*rows), endpoint=CHAT, max_prompt_chars=10_000, max_body_bytes=1024**2)
    assert len(checked.errors) == lines.MAX_ERRORS
    assert all(code == "mismatched_url" for code, *_ in checked.errors)
    assert all(len(message) <= lines.MAX_MESSAGE_CHARS for _, message, _, _ in checked.errors)
    record = BatchRecord(
        batch=BatchObject(
            id="batch_1",
            endpoint=CHAT,
            input_file_id="file-x",
            status="failed",
            created_at=0,
            expires_at=0,
            errors=BatchErrors(
                data=[BatchError(code=c, message=m, param=p, line=n) for c, m, p, n in checked.errors]
            ),
        ),
        tenant_id="t",
        user_id=None,
        api_key_id="k",
    )
    assert len(record.model_dump_json()) < 64 * 1024


def _requests(content: bytes, *, start: int, size: int) -> list[lines.Line]:
    """`content` read again from request `start` on, in chunks of `size` bytes, each request taken as soon
    as its chunk is in (as the runner takes them)."""
    reader = lines.Requests(start=start, max_body_bytes=4096)
    taken: list[lines.Line] = []
    for at in range(0, len(content), size):
        reader.feed(content[at : at + size])
        taken.extend(reader.take())
    reader.end()
    taken.extend(reader.take())
    return taken


def test_a_validated_file_read_again_gives_the_requests_validation_read_from_any_line_on() -> None:
    """The runner reads the file again to submit its lines and to write their results: each request is
    the one validation read (index, number, custom_id, the body byte for byte: its digest and idempotency
    key come from it), from `start` on, however the file is cut; the validation kept none of them."""
    content = _file(_request("a"), b"", b"   ", _request("b", max_tokens=5), _request("c"))
    whole = _read(content)
    unkept = lines.Reader(endpoint=CHAT, max_prompt_chars=10_000, max_body_bytes=4096, keep=False)
    unkept.feed(content)
    checked = unkept.end()
    assert checked.lines == [] and (checked.count, checked.errors, checked.asks) == (3, [], whole.asks)
    shape = [(line.index, line.number, line.custom_id, line.body) for line in whole.lines]
    for size in (1, 9, len(content)):
        for start in range(4):
            again = _requests(content, start=start, size=size)
            assert [(line.index, line.number, line.custom_id, line.body) for line in again] == shape[start:]


def test_a_line_that_no_longer_reads_keeps_its_index() -> None:
    """The file is immutable, but a line read again that does not parse (it cannot happen, short of the
    limits being lowered since) is still a request at its index, with an empty body its submission
    refuses: the lines after it keep their indexes, so no task id shifts to another line's."""
    content = _file(_request("a"), b"{broken", _request("c"))
    again = _requests(content, start=0, size=len(content))
    assert [(line.index, line.custom_id, line.body) for line in again][1:] == [
        (1, "", b""),
        (2, "c", again[2].body),
    ]
    with pytest.raises(APIError):
        lines.parse(again[1], CHAT, max_prompt_chars=10_000, max_body_bytes=4096)


def test_a_file_never_validated_is_read_again_up_to_the_most_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch cancelled while validating writes its lines as cancelled from the file unchecked: at most
    MAX_LINES of them, as validation would have read."""
    monkeypatch.setattr(lines, "MAX_LINES", 2)
    content = _file(_request("a"), _request("b"), _request("c"))
    assert [line.custom_id for line in _requests(content, start=0, size=7)] == ["a", "b"]


async def test_a_model_refused_fails_its_lines_in_order_up_to_the_cap() -> None:
    """Models are checked from the asks, not the requests: each refused ask fails its lines, merged in line
    order with the file's other problems and capped as they were."""

    async def check(ask: lines.Ask) -> str:
        if ask.model != "auto":
            raise ModelNotFound(f"The model {ask.model!r} does not exist", param="model")
        return ask.model

    rows = [_request(f"r{i}", model=("x", "auto", "y")[i % 3]) for i in range(lines.MAX_ERRORS * 3)]
    checked = _read(_file(*rows))
    assert all(len(numbers) <= lines.MAX_ERRORS for numbers in checked.asks.values())
    await lines.check_models(checked, check=check)
    numbers = [n for _, _, _, n in checked.errors]
    assert numbers == sorted(numbers) and len(numbers) == lines.MAX_ERRORS
    assert numbers[:4] == [1, 3, 4, 6]  # lines 1, 4, 7... ask for x and 3, 6, 9... for y
