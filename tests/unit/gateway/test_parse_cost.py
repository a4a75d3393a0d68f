"""What a request body costs the gateway's event loop before admission (every request of the replica waits
while it is read): reading grows linearly with the body (a shape and four times it, CPU time, best of
three: a linear read takes ~4x, a quadratic one ~16x; the bound is generous), and what cannot be read
cheaply enough is refused by a documented limit, counted on the JSON as read."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from switchyard.common.envelope import encode
from switchyard.common.events import Classification, TaskClassified
from switchyard.common.tokens import count_prompt
from switchyard.gateway import bounds, completions, embeddings, legacy, messages, responses
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.gemini.request import parse_count_request as parse_gemini_count
from switchyard.gateway.gemini.request import parse_embeddings
from switchyard.gateway.gemini.request import parse_request as parse_gemini
from switchyard.gateway.tasks import TaskClient
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.unit

LINEAR_BOUND = 7.0  # a linear read of four times the items: ~4x (caches and allocation add some)
MAX_PROMPT = 10**9
PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")


def _growth(body: Callable[[int], bytes], read: Callable[[bytes], Any], n: int) -> float:
    """How much longer reading `body(4 n)` takes than `body(n)` (process CPU time, best of three)."""

    def took(data: bytes) -> float:
        best = float("inf")
        for _ in range(3):
            gc.collect()
            gc.disable()  # a collection falling in one run and not the other is noise, not growth
            try:
                started = time.process_time()
                read(data)
                best = min(best, time.process_time() - started)
            finally:
                gc.enable()
        return best

    small, large = body(n), body(4 * n)
    return took(large) / max(took(small), 1e-4)


def _gemini(body: bytes) -> Any:
    return parse_gemini(body, model="auto", stream=False, max_prompt_chars=MAX_PROMPT)


def _gemini_turns(n: int) -> bytes:
    """A conversation of n alternating user and model turns (each model turn was read by copying the
    list of all the contents after it)."""
    turns = [{"role": "model" if i % 2 else "user", "parts": [{"text": "a"}]} for i in range(n)]
    return orjson.dumps({"contents": [*turns, {"role": "user", "parts": [{"text": "a"}]}]})


def _gemini_calls(n: int, *, ids: bool = True) -> bytes:
    """One model turn of n calls to one function, answered by id in the reverse order (each answer was
    looked up in the list of the calls still pending), or without ids, in order."""
    calls = [
        {"functionCall": {"name": "f", "args": {}, **({"id": f"i{k}"} if ids else {})}} for k in range(n)
    ]
    answers = [
        {"functionResponse": {"name": "f", "response": {}, **({"id": f"i{k}"} if ids else {})}}
        for k in reversed(range(n))
    ]
    return orjson.dumps(
        {
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "contents": [
                {"role": "user", "parts": [{"text": "a"}]},
                {"role": "model", "parts": calls},
                {"role": "user", "parts": answers},
            ],
        }
    )


def _responses_calls(n: int) -> bytes:
    """n function calls in a row, then their n outputs (each call copied the turn's list of calls, each
    output was looked up in a list)."""
    calls = [{"type": "function_call", "call_id": f"c{i}", "name": "f", "arguments": "{}"} for i in range(n)]
    outputs = [{"type": "function_call_output", "call_id": f"c{i}", "output": "a"} for i in range(n)]
    return orjson.dumps({"model": "auto", "input": [{"role": "user", "content": "a"}, *calls, *outputs]})


def test_gemini_alternating_turns_are_read_in_linear_time() -> None:
    assert _growth(_gemini_turns, _gemini, 6_000) < LINEAR_BOUND


def test_gemini_function_responses_pair_with_their_calls_in_linear_time() -> None:
    assert _growth(_gemini_calls, _gemini, 3_000) < LINEAR_BOUND


def test_gemini_calls_read_in_linear_time_keep_their_pairing() -> None:
    parsed = _gemini(_gemini_calls(3, ids=False)).request
    assistant, *results = parsed.messages[1:]
    assert [c.id for c in assistant.tool_calls or []] == ["call_1_0", "call_1_1", "call_1_2"]
    assert [m.tool_call_id for m in results] == ["call_1_0", "call_1_1", "call_1_2"]
    parsed = _gemini(_gemini_calls(3)).request
    assert [m.tool_call_id for m in parsed.messages[2:]] == ["i2", "i1", "i0"]


def test_responses_function_calls_in_a_row_are_read_in_linear_time() -> None:
    def read(body: bytes) -> Any:
        return responses.parse_request(body, max_prompt_chars=MAX_PROMPT)

    assert _growth(_responses_calls, read, 4_000) < LINEAR_BOUND


# The limits: counted on the JSON as read (`bounds`), each face's conversation with its parts, blocks and
# calls; the counts here with a limit of 10 (the counting is what is tested; the limit's value below).
LIMIT = 10


@pytest.fixture
def ten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounds, "MAX_ITEMS", LIMIT)


def _refused(read: Callable[[], Any], param: str | None, code: str = bounds.TOO_LONG) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        read()
    assert (caught.value.code, caught.value.param) == (code, param), caught.value.message
    return caught.value


def _chat(messages: list[dict[str, Any]]) -> Any:
    body = orjson.dumps({"model": "auto", "messages": messages})
    return completions.parse_request(body, max_prompt_chars=MAX_PROMPT)


def test_the_limit_is_anthropics_documented_number_of_messages() -> None:
    assert bounds.MAX_ITEMS == 100_000
    body = orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": ""}] * 100_001})
    error = _refused(lambda: completions.parse_request(body, max_prompt_chars=MAX_PROMPT), "messages")
    assert error.message == (
        "Invalid 'messages': array too long. Expected an array with maximum length 100000, but got an array "
        "with length 100001 instead."
    )


@pytest.mark.usefixtures("ten")
def test_a_chat_conversation_counts_its_messages_parts_and_tool_calls() -> None:
    user = {"role": "user", "content": "a"}
    assert len(_chat([user] * LIMIT).messages) == LIMIT
    _refused(lambda: _chat([user] * (LIMIT + 1)), "messages")
    parts = {"role": "user", "content": [{"type": "text", "text": "a"}] * (LIMIT - 1)}
    assert _chat([parts]).messages[0].text()
    _refused(lambda: _chat([user, parts]), "messages")
    calls = [
        {"id": f"c{n}", "type": "function", "function": {"name": "f", "arguments": "{}"}} for n in range(4)
    ]
    answers = [{"role": "tool", "tool_call_id": f"c{n}", "content": "a"} for n in range(4)]
    turn = [user, {"role": "assistant", "tool_calls": calls}, *answers]  # 6 messages and 4 calls
    assert len(_chat(turn).messages) == 6
    _refused(lambda: _chat([*turn, user]), "messages")


@pytest.mark.usefixtures("ten")
def test_a_responses_input_counts_its_items_parts_and_outputs_also_the_stored_conversation() -> None:
    def read(body: dict[str, Any], items: list[dict[str, Any]] | None = None) -> Any:
        return responses.parse_request(orjson.dumps(body), max_prompt_chars=MAX_PROMPT, items=items)

    user = {"role": "user", "content": [{"type": "input_text", "text": "a"}] * 4}  # 5 items
    output = {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "a"}]}
    call = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    assert read({"model": "auto", "input": [user, call, output]})  # 5 + 1 + 2
    _refused(lambda: read({"model": "auto", "input": [user, user, call]}), "input")
    _refused(lambda: read({"model": "auto", "input": "a"}, items=[user, user, user]), "input")


@pytest.mark.usefixtures("ten")
def test_an_anthropic_conversation_counts_blocks_and_the_blocks_of_tool_results() -> None:
    def read(conversation: list[dict[str, Any]], **more: Any) -> Any:
        body = {"model": "claude-x", "max_tokens": 8, "messages": conversation, **more}
        return messages.parse_request(orjson.dumps(body), max_prompt_chars=MAX_PROMPT)

    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    use = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}
    texts = [{"type": "text", "text": "a"}] * 3
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": texts}]}
    user = {"role": "user", "content": "a"}
    assert read([user, use, result], tools=tools)  # 3 turns, 2 blocks, 3 blocks in the result: 8
    _refused(
        lambda: read([user, use, {**result, "content": [*result["content"], *texts]}], tools=tools),
        "messages",
    )
    _refused(lambda: read([user], system=[{"type": "text", "text": "a"}] * (LIMIT + 1)), "system")


@pytest.mark.usefixtures("ten")
def test_gemini_contents_count_their_parts_and_the_system_instructions() -> None:
    content = {"role": "user", "parts": [{"text": "a"}] * 4}  # 5 items
    assert _gemini(orjson.dumps({"contents": [content, content]}))
    _refused(lambda: _gemini(orjson.dumps({"contents": [content, content, content]})), "contents")
    image = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    answer = {"functionResponse": {"name": "f", "response": {}, "parts": [image] * 5}}
    calls = [
        {"role": "user", "parts": [{"text": "a"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
        {"role": "user", "parts": [answer]},  # 3 turns, 3 parts, 5 parts in the response: 11
    ]
    body = {"contents": calls, "tools": [{"functionDeclarations": [{"name": "f"}]}]}
    _refused(lambda: _gemini(orjson.dumps(body)), "contents")
    system = {"parts": [{"text": "a"}] * (LIMIT + 1)}
    body = orjson.dumps({"contents": [content], "systemInstruction": system})
    _refused(lambda: _gemini(body), "systemInstruction.parts")


def test_gemini_function_declarations_and_embedding_batches_are_counted_before_they_are_read() -> None:
    declarations = [{"name": f"f{n}"} for n in range(bounds.MAX_TOOLS + 1)]
    body = {"contents": [{"parts": [{"text": "a"}]}], "tools": [{"functionDeclarations": declarations}]}
    _refused(lambda: _gemini(orjson.dumps(body)), "tools")
    requests = [{"content": {"parts": [{"text": "a"}]}}] * 101  # Google's 100 per batch
    embed = orjson.dumps({"requests": requests})
    read = lambda: parse_embeddings(  # noqa: E731
        embed, model="m", path_model="m", batch=True, max_prompt_chars=MAX_PROMPT
    )
    _refused(read, "requests")


def test_embeddings_take_openais_300000_token_ids_in_all_the_inputs() -> None:
    def read(value: Any) -> Any:
        body = orjson.dumps({"model": "e", "input": value})
        return embeddings.parse_request(body, max_prompt_chars=MAX_PROMPT, max_text_bytes=10**9)

    error = _refused(lambda: read([1] * 300_001), "input", "max_tokens_per_request")
    assert error.message == "Requested 300001 tokens, max 300000 tokens per request"
    _refused(lambda: read([[1] * 150_000, [1] * 150_001]), "input", "max_tokens_per_request")


def test_stop_sequences_are_held_to_what_each_faces_provider_documents() -> None:
    """OpenAI's `stop` takes up to 4 (chat and legacy completions, in its words and code), Gemini's
    `stopSequences` up to 5; Anthropic documents no number, so its `stop_sequences` have the bound of any
    list read (MAX_ITEMS). Before, ~2 M strings were read and carried to the provider."""
    chat = {"model": "auto", "messages": [{"role": "user", "content": "a"}]}
    assert _chat_body({**chat, "stop": ["a"] * 4}).stop == ["a"] * 4
    assert _chat_body({**chat, "stop": "a"}).stop == ["a"]
    error = _refused(lambda: _chat_body({**chat, "stop": ["a"] * 5}), "stop")
    assert error.message == (
        "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with "
        "length 5 instead."
    )
    legacy_body = {"model": "auto", "prompt": "a", "stop": ["a"] * 5}
    read = lambda body: legacy.parse_request(orjson.dumps(body), max_prompt_chars=MAX_PROMPT)  # noqa: E731
    assert read({**legacy_body, "stop": ["a"] * 4}).stop == ["a"] * 4
    _refused(lambda: read(legacy_body), "stop")
    claude = {"model": "claude-x", "max_tokens": 8, "messages": [{"role": "user", "content": "a"}]}
    ask = lambda body: messages.parse_request(orjson.dumps(body), max_prompt_chars=MAX_PROMPT)  # noqa: E731
    assert len(ask({**claude, "stop_sequences": ["a"] * 50}).stop or []) == 50  # more than OpenAI's 4
    _refused(lambda: ask({**claude, "stop_sequences": ["a"] * (bounds.MAX_ITEMS + 1)}), "stop_sequences")
    contents = {"contents": [{"parts": [{"text": "a"}]}]}
    assert _gemini(orjson.dumps({**contents, "generationConfig": {"stopSequences": ["a"] * 5}}))
    _refused(
        lambda: _gemini(orjson.dumps({**contents, "generationConfig": {"stopSequences": ["a"] * 6}})),
        "generationConfig.stopSequences",
        "invalid_value",
    )


def _chat_body(body: dict[str, Any]) -> Any:
    return completions.parse_request(orjson.dumps(body), max_prompt_chars=MAX_PROMPT)


def test_legacy_token_ids_are_refused_before_millions_are_validated() -> None:
    body = orjson.dumps({"model": "auto", "prompt": [1] * 2_000_000})
    _refused(
        lambda: legacy.parse_request(body, max_prompt_chars=MAX_PROMPT), "prompt", "unsupported_parameter"
    )


def _deep(levels: int) -> bytes:
    """An object nested `levels` deep, as JSON (orjson reads 1,024 levels, writes 254)."""
    return b'{"a":' * levels + b"{}" + b"}" * levels


def test_arguments_nested_too_deep_to_be_written_are_a_400_not_a_500() -> None:
    tools = orjson.dumps([{"name": "f", "input_schema": {"type": "object"}}])
    result = orjson.dumps(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a"}]}
    )
    use = (
        b'{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":'
        + _deep(300)
        + b"}]}"
    )
    body = b'{"model":"c","max_tokens":8,"tools":' + tools + b',"messages":[{"role":"user","content":"a"},'
    body += use + b"," + result + b"]}"
    _refused(
        lambda: messages.parse_request(body, max_prompt_chars=MAX_PROMPT),
        "messages.1.content.0.input",
        bounds.NESTING,
    )
    call = b'{"role":"model","parts":[{"functionCall":{"name":"f","args":' + _deep(300) + b"}}]}"
    gemini = (
        b'{"tools":[{"functionDeclarations":[{"name":"f"}]}],"contents":[{"parts":[{"text":"a"}]},' + call
    )
    gemini += b',{"role":"user","parts":[{"functionResponse":{"name":"f","response":{}}}]}]}'
    _refused(lambda: _gemini(gemini), "contents.1.parts.0", bounds.NESTING)


def test_a_schema_nested_too_deep_for_the_bus_is_a_400_before_anything_is_published() -> None:
    schema = b'{"type":"object","properties":{"a":' * 130 + b'{"type":"string"}' + b"}}" * 130
    body = (
        b'{"model":"auto","messages":[{"role":"user","content":"a"}],'
        b'"tools":[{"type":"function","function":{"name":"f","parameters":' + schema + b"}}]}"
    )
    parsed = completions.parse_request(body, max_prompt_chars=MAX_PROMPT)
    task = completions.build_task(parsed, PRINCIPAL, priority=None)
    client = TaskClient(nc=None, publisher=None)  # type: ignore[arg-type]  # refused before either is used
    refused = _refused(lambda: client.check_fits(task), None, bounds.NESTING)
    # in our words: orjson says a depth past its limit as "Circular reference detected", which it is not
    assert refused.message == (
        "The request: nested too deeply to be carried: JSON nested more than ~250 levels deep (schemas and "
        "arguments included) cannot be written as a task"
    )


def test_a_schema_too_deep_to_count_is_a_400_on_every_count_endpoint() -> None:
    """A count writes each tool as JSON (`count_prompt`), and is no task whose writing refuses it: a schema
    nested 300 levels was orjson's TypeError out of the count, a 500."""
    schema = b'{"type":"object","default":' + _deep(300) + b"}"
    anthropic = (
        b'{"model":"c","messages":[{"role":"user","content":"a"}],"tools":[{"name":"f","input_schema":'
    )
    responses_body = b'{"model":"auto","input":"a","tools":[{"type":"function","name":"f","parameters":'
    gemini = (
        b'{"generateContentRequest":{"contents":[{"parts":[{"text":"a"}]}],'
        b'"tools":[{"functionDeclarations":[{"name":"f","parameters":'
    )
    counts: list[Callable[[], Any]] = [
        lambda: count_prompt(messages.parse_count_request(anthropic + schema + b"}]}")),
        lambda: count_prompt(
            responses.parse_count_request(responses_body + schema + b"}]}", items=None, stored=True)
        ),
        lambda: count_prompt(parse_gemini_count(gemini + schema + b"}]}]}}", model="auto")),
    ]
    for count in counts:
        _refused(count, "tools", bounds.NESTING)


def test_a_task_the_gateway_takes_is_carried_by_every_event_it_travels_in_and_deeper_is_a_400() -> None:
    """The task is written once more inside TaskClassified and TaskRouted (`task`, a level deeper than as
    its own event's `data`), and orjson stops at its own depth before pydantic's (its TypeError a 500, not
    the ValueError caught): at every depth near the limit, a 400 `nesting_too_deep` or a task whose
    classified event can be written."""
    client = TaskClient(nc=SimpleNamespace(max_payload=8 << 20), publisher=None)  # type: ignore[arg-type]
    classification = Classification(
        type="qa", confidence=1, complexity=0, urgency=0, model_version="t", latency_ms=0
    )
    for depth in range(240, 256):
        schema = b'{"type":"object","default":' + b"[" * depth + b"]" * depth + b"}"
        body = (
            b'{"model":"auto","messages":[{"role":"user","content":"a"}],'
            b'"tools":[{"type":"function","function":{"name":"f","parameters":' + schema + b"}}]}"
        )
        task = completions.build_task(
            completions.parse_request(body, max_prompt_chars=MAX_PROMPT), PRINCIPAL, priority=None
        )
        try:
            client.check_fits(task)
        except InvalidRequest as refused:
            assert refused.code == bounds.NESTING, depth
            continue
        encode(TaskClassified(task=task, classification=classification), source="test")


def test_a_read_pauses_the_collector_and_gives_it_back_even_when_it_refuses() -> None:
    seen: list[bool] = []

    @bounds.reads
    def read(fail: bool) -> None:
        seen.append(gc.isenabled())
        if fail:
            raise InvalidRequest("no")

    read(False)
    with pytest.raises(InvalidRequest):
        read(True)
    assert seen == [False, False] and gc.isenabled()
    gc.disable()  # paused by someone else: left paused
    try:
        read(False)
        assert not gc.isenabled()
    finally:
        gc.enable()
