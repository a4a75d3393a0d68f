"""The Gemini face driven by Google's GenAI SDK (`google-genai`) as client code drives it, over HTTP on a
gateway process, a real nats-server and SQLite; a scripted pipeline answers on the bus: text whole and
streamed, a function-calling loop, counts, the models list, embeddings, and errors in Google's shape."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from nats.aio.client import Client
from nats.aio.msg import Msg

from switchyard.common import subjects
from switchyard.common.envelope import decode
from switchyard.common.events import FunctionCall, TaskFailed, TaskSubmitted, ToolCall, Usage
from switchyard.common.streaming import Chunk, ChunkError, encode_chunk
from tests.integration.gateway.harness import Answerer
from tests.integration.gateway.responses_world import MODEL, World, answering, completed, publish, world
from tests.support import media

pytestmark = pytest.mark.integration
__all__ = ["world"]  # a fixture


class Pipeline:
    """Plays classifier, router and executor: answers each task with `answer` (streamed word by word when
    the task streams; broken after its first word while `breaks` is set), or, while `calls` is set, with
    those tool calls."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.seen: list[TaskSubmitted] = []
        self.answer = "Paris is the capital."
        self.calls: list[ToolCall] = []
        self.breaks = False

    async def on_task(self, msg: Msg) -> None:
        _, task = decode(msg.data, (TaskSubmitted,))
        assert isinstance(task, TaskSubmitted)
        self.seen.append(task)
        if self.calls:
            calls, self.calls = self.calls, []
            done = completed(task, "", completion_tokens=7, tool_calls=calls)
            await publish(self.nc, done.model_copy(update={"finish_reason": "tool_calls"}))
            return
        words = self.answer.split(" ")
        pieces = [w + " " for w in words[:-1]] + [words[-1]]
        if task.chat().stream and self.breaks:  # as an executor whose provider broke after output
            await self.nc.publish(
                subjects.chunk_subject(task.tenant_id, task.task_id),
                encode_chunk(Chunk(seq=0, delta=pieces[0])),
            )
            error = ChunkError(code="provider_network", message="openai: the connection failed")
            await self.nc.publish(
                subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(Chunk(seq=1, error=error))
            )
            failed = TaskFailed(
                task_id=task.task_id,
                tenant_id=task.tenant_id,
                error_code=error.code,
                error_message=error.message,
                failed_at=datetime.now(UTC),
            )
            await publish(self.nc, failed)
            return
        if task.chat().stream:
            for seq, piece in enumerate(pieces):
                chunk = Chunk(seq=seq, delta=piece)
                if seq == 0:  # the first names the model and counts the prompt, as an executor's
                    chunk = Chunk(
                        seq=0, delta=piece, model=MODEL, usage=Usage(prompt_tokens=9, completion_tokens=0)
                    )
                await self.nc.publish(
                    subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(chunk)
                )
            done_chunk = Chunk(seq=len(pieces), done=True, finish_reason="stop")
            await self.nc.publish(
                subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(done_chunk)
            )
        await publish(self.nc, completed(task, self.answer, completion_tokens=len(pieces)))


@pytest.fixture
async def pipeline(world: World) -> AsyncIterator[Pipeline]:
    async with answering(world, Pipeline) as me:
        yield me


def client(world: World, *, version: str = "v1beta") -> genai.Client:
    _, base, org = world
    options = types.HttpOptions(base_url=base, api_version=version, timeout=30_000)
    return genai.Client(api_key=org.keys["member"], http_options=options)


@pytest.mark.parametrize("version", ["v1beta", "v1"])  # the Gemini CLI's, the Python SDK's default
async def test_text_whole_and_streamed(world: World, pipeline: Pipeline, version: str) -> None:
    sdk = client(world, version=version).aio
    config = types.GenerateContentConfig(
        system_instruction="Be brief.", temperature=0.2, max_output_tokens=30, top_k=40, candidate_count=1
    )
    answer = await sdk.models.generate_content(model="auto", contents="The capital of France?", config=config)
    assert answer.text == "Paris is the capital."
    assert answer.candidates and answer.candidates[0].finish_reason == types.FinishReason.STOP
    assert answer.usage_metadata is not None
    assert (answer.usage_metadata.prompt_token_count, answer.usage_metadata.candidates_token_count) == (9, 4)
    assert answer.model_version == MODEL and answer.response_id == pipeline.seen[-1].task_id
    asked = pipeline.seen[-1].chat()
    assert [(m.role, m.content) for m in asked.messages] == [
        ("system", "Be brief."),
        ("user", "The capital of France?"),
    ]
    assert (asked.temperature, asked.max_tokens, asked.stream) == (0.2, 30, False)

    stream = await sdk.models.generate_content_stream(model="auto", contents="The capital of France?")
    chunks = [chunk async for chunk in stream]
    assert "".join(c.text or "" for c in chunks) == "Paris is the capital."
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata is not None and chunks[-1].usage_metadata.total_token_count == 13
    # every chunk before it with the prompt's count, as Gemini's (it was on the last only)
    assert [
        (c.usage_metadata.prompt_token_count, c.usage_metadata.total_token_count) for c in chunks[:-1]
    ] == [(9, 9)] * (len(chunks) - 1)
    assert pipeline.seen[-1].chat().stream is True


async def test_a_function_calling_loop_and_a_chat(world: World, pipeline: Pipeline) -> None:
    sdk = client(world).aio
    weather = types.FunctionDeclaration(
        name="get_weather",
        description="The weather in a city.",
        parameters=types.Schema(
            type=types.Type.OBJECT,
            properties={"city": types.Schema(type=types.Type.STRING)},
            required=["city"],
        ),
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")),
    )
    pipeline.calls = [
        ToolCall(id="call_7", function=FunctionCall(name="get_weather", arguments='{"city":"Paris"}'))
    ]
    chat = sdk.chats.create(model="auto", config=config)
    first = await chat.send_message("Weather in Paris?")
    assert first.function_calls is not None
    [call] = first.function_calls
    assert (call.id, call.name, call.args) == ("call_7", "get_weather", {"city": "Paris"})
    asked = pipeline.seen[-1].chat()
    assert asked.tools is not None and asked.tools[0].function.parameters == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    assert asked.tool_choice == {"type": "function", "function": {"name": "get_weather"}}

    reply = types.Part.from_function_response(name="get_weather", response={"output": "sunny, 21 C"})
    reply.function_response.id = call.id  # type: ignore[union-attr]
    second = await chat.send_message(reply)
    assert second.text == "Paris is the capital."
    history = pipeline.seen[-1].chat().messages
    assert [m.role for m in history] == ["user", "assistant", "tool"]
    assert history[1].tool_calls is not None and history[1].tool_calls[0].id == "call_7"
    assert (history[2].tool_call_id, history[2].content) == ("call_7", "sunny, 21 C")


async def test_counts_models_and_errors_in_googles_shape(world: World, pipeline: Pipeline) -> None:
    sdk = client(world).aio
    counted = await sdk.models.count_tokens(model="auto", contents="hello there")
    assert counted.total_tokens is not None and counted.total_tokens > 0
    # an image and a PDF count as Gemini documents them (258 per 768x768 tile; 258 a page), each in its
    # modality's detail (before: 0, all of the count TEXT)
    image = types.Part.from_bytes(data=media.png(1000, 500), mime_type="image/png")
    pdf = types.Part.from_bytes(data=media.pdf(3), mime_type="application/pdf")
    with_media = await sdk.models.count_tokens(model="auto", contents=["hello there", image, pdf])
    assert with_media.total_tokens == counted.total_tokens + 2 * 258 + 3 * 258
    inline = {"mimeType": "image/png", "data": base64.b64encode(media.png(1000, 500)).decode()}
    async with httpx.AsyncClient(base_url=world[1]) as c:
        raw = await c.post(
            "/v1beta/models/auto:countTokens",
            json={"contents": [{"parts": [{"text": "hello there"}, {"inlineData": inline}]}]},
            headers={"x-goog-api-key": world[2].keys["member"]},
        )
    details = {d["modality"]: d["tokenCount"] for d in raw.json()["promptTokensDetails"]}
    assert details == {"TEXT": counted.total_tokens, "IMAGE": 2 * 258}
    models = [m async for m in await sdk.models.list()]
    by_name = {m.name: m for m in models}
    assert {"models/auto", "models/local/smollm2-135m-instruct"} <= set(by_name)
    assert by_name["models/auto"].supported_actions == [
        "generateContent",
        "streamGenerateContent",
        "countTokens",
    ]
    v1 = [
        m.name async for m in await client(world, version="v1").aio.models.list()
    ]  # /v1/models, Google's shape
    assert v1 == [m.name for m in models]
    one = await sdk.models.get(model="local/smollm2-135m-instruct")
    assert one.name == "models/local/smollm2-135m-instruct"
    # the embedding models `:embedContent` serves are listed with that method, as Google lists its own
    # (they were left out, and `get` said "the Messages API cannot use" them)
    embedder = by_name["models/local/all-minilm-l6-v2"]
    assert embedder.supported_actions == ["embedContent", "batchEmbedContents"]
    got = await sdk.models.get(model="local/all-minilm-l6-v2")
    assert got.supported_actions == ["embedContent", "batchEmbedContents"]

    with pytest.raises(genai_errors.ClientError) as caught:
        await sdk.models.generate_content(model="gemini-2.5-flash", contents="hi")
    error = caught.value
    assert (error.code, error.status) == (404, "NOT_FOUND")
    assert "gemini/gemini-2.5-flash" in (error.message or "")
    detail = error.details["error"]["details"][0]
    assert detail["reason"] == "MODEL_NOT_FOUND" and detail["metadata"]["request_id"].startswith("req_")
    with pytest.raises(genai_errors.ClientError) as caught:
        await sdk.models.generate_content(
            model="auto",
            contents="hi",
            config=types.GenerateContentConfig(tools=[types.Tool(google_search={})]),
        )
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.details["error"]["details"][0]["metadata"]["param"] == "tools.0.googleSearch"
    assert len(pipeline.seen) == 0  # nothing refused reached the bus


async def test_rest_forms_key_query_json_array_stream_and_unknown_methods(
    world: World, pipeline: Pipeline
) -> None:
    _, base, org = world
    key = org.keys["member"]
    body = {"contents": [{"parts": [{"text": "The capital of France?"}]}]}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        plain = await http.post(f"/v1beta/models/auto:generateContent?key={key}", json=body)
        assert plain.status_code == 200 and plain.json()["candidates"][0]["content"]["parts"] == [
            {"text": "Paris is the capital."}
        ]
        streamed = await http.post(
            "/v1beta/models/auto:streamGenerateContent", json=body, headers={"x-goog-api-key": key}
        )
        assert streamed.headers["content-type"].startswith("application/json")
        array: list[dict[str, Any]] = orjson.loads(streamed.content)
        assert (
            "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in array)
            == "Paris is the capital."
        )
        unknown = await http.post("/v1beta/models/auto:predict", json=body, headers={"x-goog-api-key": key})
        assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"
        nameless = await http.post(
            "/v1beta/models/:generateContent", json=body, headers={"x-goog-api-key": key}
        )
        assert (
            nameless.status_code == 400
            and nameless.json()["error"]["details"][0]["metadata"]["param"] == "model"
        )
        # an OpenAI client's retrieve of a model id with a tag is OpenAI's, and takes no ?key=
        tagged = await http.get("/v1/models/local/smollm2:latest", headers={"authorization": f"Bearer {key}"})
        assert tagged.status_code == 404 and tagged.json()["error"]["code"] == "model_not_found"
        assert "status" not in tagged.json()["error"]
        assert (await http.get(f"/v1/models/local/smollm2:latest?key={key}")).status_code == 401
        paged = await http.get("/v1beta/models?pageSize=0", headers={"x-goog-api-key": key})
        assert paged.status_code == 400
        assert paged.json()["error"]["details"][0]["metadata"]["param"] == "pageSize"
        missing = await http.post("/v1beta/models/auto:generateContent", json=body)
        assert missing.status_code == 401 and missing.json()["error"]["status"] == "UNAUTHENTICATED"
        assert (
            missing.json()["error"]["details"][0]["metadata"]["request_id"] == missing.headers["x-request-id"]
        )


async def test_embeddings(world: World) -> None:
    sdk = client(world).aio
    answerer = await Answerer.start(world[0].url)
    try:
        result = await sdk.models.embed_content(model="local/all-minilm-l6-v2", contents=["hello", "world"])
        assert result.embeddings is not None and len(result.embeddings) == 2
        assert all(len(e.values or []) == 384 for e in result.embeddings)
        [task] = answerer.seen
        embedding = task.embedding()
        assert embedding is not None and embedding.input == ["hello", "world"]
    finally:
        await answerer.close()


async def test_a_stream_that_breaks_ends_with_an_error_carrying_the_request_id(
    world: World, pipeline: Pipeline
) -> None:
    """The error event that ends a broken stream carries the request id in its ErrorInfo, as an error
    response does: the id to quote to an operator, who finds the request in the logs by it."""
    _, base, org = world
    pipeline.breaks = True
    body = {"contents": [{"parts": [{"text": "The capital of France?"}]}]}
    headers = {"x-goog-api-key": org.keys["member"]}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for query in ("?alt=sse", ""):
            r = await http.post(
                f"/v1beta/models/auto:streamGenerateContent{query}", json=body, headers=headers
            )
            events = (
                [orjson.loads(e.removeprefix(b"data: ")) for e in r.content.split(b"\r\n\r\n") if e]
                if query
                else orjson.loads(r.content)
            )
            assert events[0]["candidates"][0]["content"]["parts"] == [{"text": "Paris "}]
            error = events[-1]["error"]
            # as a non-stream answer of the same failure says it: 502 UNAVAILABLE (it was 500 INTERNAL)
            assert (error["code"], error["status"]) == (502, "UNAVAILABLE")
            assert error["details"][0]["reason"] == "PROVIDER_NETWORK"
            assert error["details"][0]["metadata"] == {
                "code": "provider_network",
                "type": "api_error",
                "request_id": r.headers["x-request-id"],
            }


async def test_a_function_name_gemini_refuses_is_refused_in_its_words(
    world: World, pipeline: Pipeline
) -> None:
    """Gemini: "Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z,
    A-Z, 0-9), underscores (_), dots (.) or dashes (-), with a maximum length of 64." (its reference adds
    colons). Names up to 256 characters of any kind were taken and passed on."""
    headers = {"x-goog-api-key": world[2].keys["member"]}
    async with httpx.AsyncClient(base_url=world[1], timeout=30) as c:

        async def ask(name: str) -> httpx.Response:
            tools = [{"functionDeclarations": [{"name": "fine"}, {"name": name}]}]
            body = {"contents": [{"parts": [{"text": "hi"}]}], "tools": tools}
            return await c.post("/v1beta/models/auto:generateContent", json=body, headers=headers)

        for bad in ("get weather", "1st", "-x", "a" * 65, "caf\u00e9", "a/b"):
            refused = await ask(bad)
            assert refused.status_code == 400, (bad, refused.text)
            error = refused.json()["error"]
            assert error["status"] == "INVALID_ARGUMENT" and "Invalid function name" in error["message"], (
                error
            )
            assert error["details"][0]["metadata"]["param"] == "tools.0.functionDeclarations.1.name", error
        assert len(pipeline.seen) == 0
        for good in ("_private", "ns.get_weather-2", "mcp:read", "a" * 64):
            took = await ask(good)
            assert took.status_code == 200, (good, took.text)
    assert len(pipeline.seen) == 4
