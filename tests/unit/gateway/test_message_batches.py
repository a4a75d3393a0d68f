"""A message batch as Anthropic shows it (its status and counts read from the batch's record), its result
lines, and its requests file as the batch runner reads it."""

from __future__ import annotations

import time

import orjson
import pytest

from switchyard.gateway.batches import lines, message_render
from switchyard.gateway.batches.models import Batch, LineError, RequestCounts
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.message_batches.models import message_batch
from switchyard.gateway.message_batches.service import requests_file
from tests.support.loop_gaps import longest_gap

BASE = "http://gw"


def _batch(status: str, total: int = 5, completed: int = 0, failed: int = 0, **at: int) -> Batch:
    return Batch(
        id="msgbatch_00",
        endpoint=lines.MESSAGES,
        input_file_id="file-x",
        status=status,  # type: ignore[arg-type]
        created_at=1_796_536_800,
        expires_at=1_796_623_200,
        request_counts=RequestCounts(total=total, completed=completed, failed=failed),
        **at,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("status", ["validating", "in_progress", "finalizing"])
def test_running_is_in_progress_with_every_request_processing(status: str) -> None:
    """Anthropic's request_counts: every request `processing` until the whole batch ends (its SDK's
    MessageBatchRequestCounts: succeeded, errored, canceled, expired are "zero until processing of the
    entire Message Batch has ended"), however many have answered."""
    shown = message_batch(_batch(status, completed=2, failed=1), base_url=BASE)
    assert shown.processing_status == "in_progress" and shown.results_url is None and shown.ended_at is None
    counts = shown.request_counts
    assert (counts.processing, counts.succeeded, counts.errored) == (5, 0, 0)
    assert shown.created_at == "2026-12-06T06:00:00Z"


def test_cancelled_ends_with_the_rest_canceled() -> None:
    canceling = message_batch(_batch("cancelling", completed=1, cancelling_at=1_796_536_860), base_url=BASE)
    assert canceling.processing_status == "canceling"
    assert (canceling.request_counts.processing, canceling.request_counts.succeeded) == (5, 0)
    assert canceling.cancel_initiated_at == "2026-12-06T06:01:00Z"
    ended = message_batch(
        _batch("cancelled", completed=1, failed=1, cancelling_at=1, cancelled_at=1_796_536_920), base_url=BASE
    )
    assert ended.processing_status == "ended" and ended.ended_at == "2026-12-06T06:02:00Z"
    counts = ended.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled) == (0, 1, 1, 3)
    assert ended.results_url == f"{BASE}/v1/messages/batches/msgbatch_00/results"


def test_expired_and_failed_batches_tell_their_unrun_requests() -> None:
    expired = message_batch(_batch("expired", completed=4, expired_at=2), base_url=BASE)
    assert (expired.request_counts.expired, expired.request_counts.succeeded) == (1, 4)
    failed = message_batch(_batch("failed", completed=1, failed_at=2), base_url=BASE)  # its file gone
    assert (failed.request_counts.errored, failed.request_counts.processing) == (4, 0)


def test_result_lines_in_anthropics_shape() -> None:
    ok = orjson.loads(message_render.succeeded("b", 0, "a", request_id="t", body=b'{"type":"message"}'))
    assert ok == {"custom_id": "a", "result": {"type": "succeeded", "message": {"type": "message"}}}
    error = LineError(status=403, type="permission_error", code="model_not_allowed", message="no")
    errored = orjson.loads(message_render.failed("b", 1, "c", request_id="t", error=error))["result"]
    assert errored["type"] == "errored" and errored["error"]["type"] == "error"
    assert errored["error"]["error"]["type"] == "permission_error"
    assert errored["error"]["error"]["code"] == "model_not_allowed"
    upstream = LineError(status=502, type="api_error", code="upstream_failed", message="down")
    assert b'"type":"api_error"' in message_render.failed("b", 2, "d", request_id="t", error=upstream)
    busy = LineError(status=503, type="api_error", code="provider_overloaded", message="busy")
    assert b'"type":"overloaded_error"' in message_render.failed("b", 2, "d", request_id="t", error=busy)
    for ended, shown in (("cancelled", "canceled"), ("expired", "expired")):
        line = orjson.loads(message_render.unfinished("b", 3, "e", ended=ended))
        assert line == {"custom_id": "e", "result": {"type": shown}}


def _file(*params: dict[str, object]) -> bytes:
    return b"".join(
        orjson.dumps({"custom_id": f"r{i}", "method": "POST", "url": lines.MESSAGES, "body": p}) + b"\n"
        for i, p in enumerate(params)
    )


def test_a_message_batchs_bad_requests_are_counted_not_failed() -> None:
    """Its requests are read by the Anthropic face as each runs: validation counts them, a bad one (no
    max_tokens, `stream: true`) is its request's error then."""
    good = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    content = _file(good, {k: v for k, v in good.items() if k != "max_tokens"}, {**good, "stream": True})
    checked = lines.read(content, endpoint=lines.MESSAGES, max_prompt_chars=10_000, max_body_bytes=4096)
    assert checked.errors == [] and checked.count == 3 and not checked.asks
    bad, streams = checked.lines[1], checked.lines[2]
    assert lines.parse(checked.lines[0], lines.MESSAGES, max_prompt_chars=10_000, max_body_bytes=4096)
    with pytest.raises(InvalidRequest) as caught:
        lines.parse(bad, lines.MESSAGES, max_prompt_chars=10_000, max_body_bytes=4096)
    assert caught.value.param == "max_tokens"
    with pytest.raises(InvalidRequest) as caught:
        lines.parse(streams, lines.MESSAGES, max_prompt_chars=10_000, max_body_bytes=4096)
    assert caught.value.param == "stream"


def test_a_message_batch_reads_past_openais_line_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lines, "MAX_LINES", 1)
    content = _file({}, {}, {})
    reader = lines.Requests(start=0, max_body_bytes=4096, endpoint=lines.MESSAGES)
    reader.feed(content)
    reader.end()
    assert [line.custom_id for line in reader.take()] == ["r0", "r1", "r2"]
    assert lines.max_lines(lines.MESSAGES) == 100_000
    assert lines.max_lines("/v1/chat/completions") == 1


async def test_a_large_create_leaves_the_event_loop_free() -> None:
    """100,000 requests take a second or more to check and write out: the replica's event loop serves its
    other requests meanwhile, held only while the body's JSON is read (one call)."""
    ask = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "q" * 100}]}
    body = orjson.dumps({"requests": [{"custom_id": f"r{i}", "params": ask} for i in range(100_000)]})
    started = time.monotonic()
    orjson.loads(body)
    reading = time.monotonic() - started
    (count, data), longest, took = await longest_gap(requests_file(body, max_body_bytes=4096), tick_s=0.005)
    assert count == 100_000 and data.count(b"\n") == 100_000
    # read in one call, the rest in steps: the longest pause is about the read (a third of the whole);
    # checked in one call, it was the whole. Margins for a loaded machine's scheduling.
    assert longest < max(2.5 * reading, 0.6 * took), (longest, reading, took)


async def test_create_errors_name_the_request() -> None:
    ok = {"custom_id": "a", "params": {"model": "auto"}}
    for body, code, param in (
        ({}, "missing_field", "requests"),
        ({"requests": []}, "invalid_value", "requests"),
        ({"requests": [ok, {"custom_id": "b c", "params": {}}]}, "invalid_value", "requests.1.custom_id"),
        ({"requests": [ok, {"custom_id": "b"}]}, "missing_field", "requests.1.params"),
        ({"requests": [ok, {"custom_id": "b", "params": 3}]}, "invalid_type", "requests.1.params"),
        ({"requests": [ok, ok]}, "duplicate_custom_id", "requests.1.custom_id"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            await requests_file(orjson.dumps(body), max_body_bytes=4096)
        assert (caught.value.code, caught.value.param) == (code, param), body


def test_a_message_batch_line_naming_an_alias_runs_as_the_alias() -> None:
    """As on /v1/messages: a bare name that is an alias of the policy is not the anthropic provider's."""
    body = {"model": "cheap", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    line = lines.read(
        _file(body), endpoint=lines.MESSAGES, max_prompt_chars=10_000, max_body_bytes=4096
    ).lines[0]
    limits = {"max_prompt_chars": 10_000, "max_body_bytes": 4096}
    assert lines.parse(line, lines.MESSAGES, aliases={"cheap": "auto"}, **limits).model == "cheap"
    assert lines.parse(line, lines.MESSAGES, aliases={}, **limits).model == "anthropic/cheap"
