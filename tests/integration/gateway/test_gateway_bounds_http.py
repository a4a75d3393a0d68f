"""The gateway's time bounds, as test_gateway_http.py runs it (its own process on a real nats-server and
SQLite, the test playing the rest of the pipeline): a task the executor took past its bound (504
task_expired), a request's bound counted from its arrival and a task API task's from its start, a silent
pipeline's 504 recorded on the bus, a stream that stops coming cut at its idle bound and kept alive until
then, and the own time (the latency SLIs' source) a request spent here."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from google import genai
from google.genai import types as genai_types
from prometheus_client.parser import text_string_to_metric_families

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.envelope import decode
from switchyard.common.events import TaskTimedOut
from tests.integration.gateway.test_gateway_http import (
    BODY,
    Pipeline,
    _auth,
    _error,
    _plain_streamed_and_anthropic,
    gateway,
    pipeline,
)

pytestmark = pytest.mark.integration
__all__ = ["gateway", "pipeline"]  # fixtures, used by name


@pytest.mark.parametrize("pipeline", ["expired"], indirect=True)
async def test_a_task_whose_bound_passed_in_queue_is_a_504_task_expired(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    """The executor took the task after its bound (counted from its submission) and did not run it: the
    client's wait is over, as a timeout's, with the code saying why (Anthropic's face: `timeout_error`)."""
    r, rs, ra = await _plain_streamed_and_anthropic(*gateway)
    for response in (r, rs):
        assert response.status_code == 504, response.text
        assert (_error(response)["type"], _error(response)["code"]) == ("timeout", "task_expired")
    assert ra.status_code == 504 and ra.json()["error"]["type"] == "timeout_error"


async def test_a_tasks_bound_counts_from_its_request_and_a_task_api_tasks_run_from_its_start(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    """A request whose client waits 30 s carries 27 s (less the margin) counted from its submission, less
    what it spent in the gateway first; a task API task, which may queue, counts its run from its start
    and carries the end of its following (SWITCHYARD_ASYNC_TASK_TIMEOUT_S) as its deadline."""
    base, key = gateway
    async with httpx.AsyncClient() as c:
        waited = await c.post(
            f"{base}/v1/chat/completions", json=BODY, headers={**_auth(key), "x-switchyard-timeout": "30"}
        )
        queued = await c.post(f"{base}/v1/tasks", json=BODY, headers=_auth(key))
    assert (waited.status_code, queued.status_code) == (200, 202), (waited.text, queued.text)
    attended, unattended = pipeline.seen
    assert attended.timeout_s is not None and 20.0 < attended.timeout_s < 27.0  # 27.0 before
    assert (attended.timeout_from, attended.deadline) == (None, None)
    assert (unattended.timeout_s, unattended.timeout_from) == (600.0, "started")
    assert unattended.deadline is not None
    assert (unattended.deadline - unattended.submitted_at).total_seconds() == 3600.0


@pytest.mark.parametrize("pipeline", ["silent"], indirect=True)
async def test_timeout_is_a_504_and_is_recorded(
    gateway: tuple[str, str], pipeline: Pipeline, nats_server: NatsServer
) -> None:
    base, key = gateway
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(f"{base}/v1/chat/completions", json=BODY, headers=_auth(key))
    assert r.status_code == 504 and _error(r)["type"] == "timeout"
    js = pipeline.nc.jetstream()
    msg = await js.get_last_msg(subjects.STREAM_EVENTS, subjects.TASK_TIMED_OUT)
    _, timed_out = decode(msg.data, (TaskTimedOut,))
    assert timed_out.task_id == pipeline.seen[0].task_id  # type: ignore[attr-defined]


@pytest.mark.parametrize("pipeline", ["silent", "stall"], indirect=True)
async def test_a_stream_that_stops_coming_ends_at_the_task_timeout(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    """Silent before any text: a 504 at the gateway's task timeout; silent after text: the stream ends with
    a timeout event, not [DONE], at its stream idle timeout (both 3 s here), not later."""
    base, key = gateway
    async with httpx.AsyncClient(timeout=30) as c:
        started = time.monotonic()
        r = await c.post(f"{base}/v1/chat/completions", json={**BODY, "stream": True}, headers=_auth(key))
        waited = time.monotonic() - started
    assert 2.5 < waited < 10
    if pipeline.behaviour == "silent":
        assert r.status_code == 504 and _error(r)["type"] == "timeout"
        return
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert orjson.loads(events[0])["choices"][0]["delta"]["content"] == "Par"
    assert "[DONE]" not in events and orjson.loads(events[-1])["error"]["code"] == "task_timeout"


async def test_the_latency_slis_source_is_switchyards_own_time_json_and_streamed(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    """switchyard_gateway_overhead_seconds (the latency SLIs' source, deploy/prometheus/rules/slo.yml) gets
    each answered request's own time: a whole answer's header, a stream's at its end."""
    base, key = gateway
    async with httpx.AsyncClient() as c:
        whole = await c.post(f"{base}/v1/chat/completions", json=BODY, headers=_auth(key))
        streamed = await c.post(
            f"{base}/v1/chat/completions", json={**BODY, "stream": True}, headers=_auth(key)
        )
        refused = await c.post(f"{base}/v1/chat/completions", json={"model": "auto"}, headers=_auth(key))
        exposed = (await c.get(f"{base}/metrics")).text
    assert (whole.status_code, streamed.status_code, refused.status_code) == (200, 200, 400)
    samples = {
        (s.name, s.labels.get("route"), s.labels.get("le")): s.value
        for family in text_string_to_metric_families(exposed)
        if family.name == "switchyard_gateway_overhead_seconds"
        for s in family.samples
    }
    route = "/v1/chat/completions"
    # two answers observed, the refusal (no provider time to take away) not
    assert samples[("switchyard_gateway_overhead_seconds_count", route, None)] == 2
    own = samples[("switchyard_gateway_overhead_seconds_sum", route, None)]
    assert own >= float(whole.headers["x-switchyard-overhead-ms"]) / 1000.0
    assert samples[("switchyard_gateway_overhead_seconds_bucket", route, "2.0")] == 2


@pytest.mark.parametrize("gateway", [{"SWITCHYARD_STREAM_KEEPALIVE_S": "0.4"}], indirect=True)
@pytest.mark.parametrize("pipeline", ["stall"], indirect=True)
async def test_a_silent_stream_gets_keep_alives_its_clients_skip(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    """A stream silent after its first text (a model reasoning before a tool call) gets an SSE comment every
    SWITCHYARD_STREAM_KEEPALIVE_S, so that a proxy does not close it as idle, until the stream's idle bound
    ends it (3 s here); the Anthropic face gets Anthropic's own ping event."""
    base, key = gateway
    anthropic = {"model": "auto", "max_tokens": 16, "messages": BODY["messages"]}
    async with httpx.AsyncClient(timeout=30) as c:
        chat = await c.post(f"{base}/v1/chat/completions", json={**BODY, "stream": True}, headers=_auth(key))
        claude = await c.post(
            f"{base}/v1/messages", json={**anthropic, "stream": True}, headers={"x-api-key": key}
        )
    events = chat.text.split("\n\n")
    beats = [n for n, e in enumerate(events) if e == ": keep-alive"]
    # between the text and the idle bound's error event (3 s of silence: ~7 at 0.4 s)
    assert len(beats) >= 4, chat.text
    text = next(n for n, e in enumerate(events) if '"content":"Par"' in e)
    error = next(n for n, e in enumerate(events) if '"error"' in e)
    assert text < min(beats) and max(beats) < error
    pings = [e for e in claude.text.split("\n\n") if e.startswith("event: ping")]
    assert len(pings) >= 4 and pings[-1] == 'event: ping\ndata: {"type":"ping"}', claude.text


@pytest.mark.parametrize("gateway", [{"SWITCHYARD_STREAM_KEEPALIVE_S": "0.4"}], indirect=True)
@pytest.mark.parametrize("pipeline", ["late", "late-fail", "fail"], indirect=True)
async def test_a_stream_silent_before_its_first_output_starts_with_keep_alives(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    """A model silent for 1.5 s before its first output (one thinking for minutes, scaled down): the
    response starts after SWITCHYARD_STREAM_KEEPALIVE_S (0.4 s) and keep-alives fill the wait, so a proxy
    does not close it as idle; the answer follows, or its failure as the stream's error event (not [DONE]).
    A failure within that time keeps its HTTP status (`fail`: at once)."""
    base, key = gateway
    anthropic = {"model": "auto", "max_tokens": 16, "messages": BODY["messages"], "stream": True}
    requests = [
        ("/v1/chat/completions", {**BODY, "stream": True}, _auth(key)),
        ("/v1/messages", anthropic, {"x-api-key": key}),
    ]
    async with httpx.AsyncClient(timeout=30) as c:
        for path, body, headers in requests:
            started = time.monotonic()
            async with c.stream("POST", f"{base}{path}", json=body, headers=headers) as r:
                opened = time.monotonic() - started
                text = (await r.aread()).decode()
            if pipeline.behaviour == "fail":
                assert r.status_code == 502 and opened < 1.0, text
                continue
            assert r.status_code == 200 and opened < 1.3, (opened, text)  # 1.5 s before its first output
            events = text.split("\n\n")
            beat = ": keep-alive" if path == "/v1/chat/completions" else 'event: ping\ndata: {"type":"ping"}'
            beats = [n for n, e in enumerate(events) if e == beat]
            first = next(n for n, e in enumerate(events) if ("Par" in e or "error" in e))
            assert len(beats) >= 2 and min(beats) < first, text  # ~3 in the 1.1 s after the headers
            data = [e.rsplit("data: ", 1)[1] for e in events if "data: " in e]
            if pipeline.behaviour == "late":
                assert "error" not in text and any("Par" in d for d in data), text
                assert path != "/v1/chat/completions" or data[-1] == "[DONE]", text
            else:  # the failure before the first output, as the stream's error event; no end
                error = orjson.loads(data[-1])["error"]
                assert "[DONE]" not in text and "message_stop" not in text, text
                assert "every candidate failed" in error["message"], text


@pytest.mark.parametrize("gateway", [{"SWITCHYARD_STREAM_KEEPALIVE_S": "0.4"}], indirect=True)
@pytest.mark.parametrize("pipeline", ["late"], indirect=True)
async def test_the_gemini_faces_keep_alive_is_a_blank_line_google_genai_skips(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    """The Gemini face's silences are filled with blank lines: google-genai reads any other line that is
    not `data: ` as a JSON error body, skips blank ones; in the unsuffixed stream (one JSON array) a blank
    line is whitespace between its elements. Silent 1.5 s before its first output here."""
    base, key = gateway
    path = f"{base}/v1beta/models/auto:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "What is the capital of France?"}]}]}
    async with httpx.AsyncClient(timeout=30) as c:
        sse = await c.post(f"{path}?alt=sse", json=body, headers={"x-goog-api-key": key})
        array = await c.post(path, json=body, headers={"x-goog-api-key": key})
    assert (sse.status_code, array.status_code) == (200, 200), (sse.text, array.text)
    for r in (sse, array):
        lead = len(r.text) - len(r.text.lstrip("\n"))
        assert lead >= 2, r.text  # ~3 in the 1.1 s after the headers, before the first output
    assert [e["candidates"][0]["content"]["parts"][0]["text"] for e in orjson.loads(array.text)][:2] == [
        "Par",
        "is",
    ]
    options = genai_types.HttpOptions(base_url=base, api_version="v1beta", timeout=30_000)
    sdk = genai.Client(api_key=key, http_options=options).aio
    pieces = [
        c.text async for c in await sdk.models.generate_content_stream(model="auto", contents="Capital?")
    ]
    assert "".join(p or "" for p in pieces).startswith("Paris"), pieces
