"""Every face's request bodies, fuzzed: valid bodies of each face (tools, tool turns, images and PDFs as
data URLs, thinking blocks, cache marks, response formats), first with every field in turn replaced by each
of a set of hostile values, deleted, or given an unknown field nested 300 levels (the sweep: systematic, a
few seconds), then mutated one to three times anywhere by hypothesis: a value replaced by another JSON
type, an over-long string (257, 5,000, 70,000 characters), an empty string, list or object, a value nested
300 levels, a huge, negative or float number, a lone surrogate (escaped in the JSON), a data URL of an odd
media type or a payload that is not base64 or a hostile image or PDF, a list's item repeated (duplicate
ids), a field deleted or an unknown one added. Each body goes through what the gateway does with it before
its task is published (`read_*`: the face's parser, the task built and written as the bus would carry it,
its tokens counted as admission and the count endpoints do), and each is accepted or refused with a 4xx
`APIError` whose `param` names a field of the body and whose message is short and holds no Python repr,
traceback or pydantic wording: never another exception (a 500 `internal_error`). Defects found this way
have their plain examples in tests/unit (tool_choice's function, counts of deep schemas, Gemini's empty
countTokens contents and outputDimensionality, message batch params, conversation items, long values
echoed in refusals)."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import re
import struct
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard.common.documents import document_tokens
from switchyard.common.events import TaskSubmitted
from switchyard.common.media_tokens import MediaRule, image_tokens
from switchyard.common.tokens import count_prompt
from switchyard.gateway import completions, embeddings, legacy, messages, responses
from switchyard.gateway.bodies import json_object
from switchyard.gateway.conversations import items
from switchyard.gateway.conversations.store import StoredConversation
from switchyard.gateway.errors import APIError
from switchyard.gateway.gemini import request as gemini
from switchyard.gateway.message_batches.service import requests_file
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.taskapi import body as task_body
from switchyard.gateway.tasks import TaskClient
from switchyard.gateway.tenants import Principal
from tests.fuzz.face_examples import (
    ANTHROPIC,
    CHAT,
    CONVERSATION_ITEMS,
    EMBEDDINGS,
    GEMINI,
    GEMINI_BATCH,
    GEMINI_COUNTS,
    GEMINI_EMBED,
    LEGACY,
    MESSAGE_BATCH,
    PDF,
    PNG,
    RESPONSES,
)
from tests.support import media

pytestmark = pytest.mark.unit
LONG = os.environ.get("SWITCHYARD_LONG_TESTS") == "1"
EXAMPLES = 100 * (25 if LONG else 1)  # `make fuzz`: 25x
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
MAX_PROMPT = 100_000
OPENAI_MEDIA = MediaRule("openai", model="gpt-4o")


def _carried(task: TaskSubmitted, media_rule: MediaRule) -> None:
    """The task written as the bus carries it (413/400 as `serve` refuses it), then counted as admitted."""
    TaskClient(nc=SimpleNamespace(max_payload=8 << 20), publisher=None).check_fits(task)  # type: ignore[arg-type]
    count_prompt(task.request, media=media_rule)


def _served(parsed: ChatCompletionRequest, media_rule: MediaRule) -> None:
    _carried(completions.build_task(parsed, PRINCIPAL, priority=None), media_rule)


def read_chat(raw: bytes) -> None:
    _served(completions.parse_request(raw, max_prompt_chars=MAX_PROMPT), OPENAI_MEDIA)


def read_task(raw: bytes) -> None:  # the task API's: a chat request, no field it does not know
    _served(task_body.parse(raw, max_prompt_chars=MAX_PROMPT), OPENAI_MEDIA)


def read_legacy(raw: bytes) -> None:
    _served(legacy.parse_request(raw, max_prompt_chars=MAX_PROMPT), OPENAI_MEDIA)


def read_responses(raw: bytes) -> None:
    _served(responses.parse_request(raw, max_prompt_chars=MAX_PROMPT, stored=True), OPENAI_MEDIA)


def read_responses_count(raw: bytes) -> None:
    count_prompt(responses.parse_count_request(raw, items=None, stored=True), media=OPENAI_MEDIA)


def read_anthropic(raw: bytes) -> None:
    parsed = messages.parse_request(raw, max_prompt_chars=MAX_PROMPT, aliases=("claude-sonnet-4-5",))
    _served(parsed, MediaRule("anthropic"))


def read_anthropic_count(raw: bytes) -> None:
    count_prompt(messages.parse_count_request(raw), media=MediaRule("anthropic"))


def read_gemini(raw: bytes) -> None:
    parsed = gemini.parse_request(raw, model="auto", stream=False, max_prompt_chars=MAX_PROMPT)
    _served(parsed.request, MediaRule("gemini"))


def read_gemini_count(raw: bytes) -> None:
    chat, rule = gemini.parse_count_request(raw, model="auto"), MediaRule("gemini")
    count_prompt(chat, media=rule)
    image_tokens(chat.messages, rule)
    document_tokens(chat.messages, per_page=rule.page())


def _embedded(parsed: embeddings.Embeddings) -> None:
    TaskClient(nc=SimpleNamespace(max_payload=8 << 20), publisher=None).check_fits(  # type: ignore[arg-type]
        embeddings.build_task(parsed, PRINCIPAL, priority=None)
    )


def read_embeddings(raw: bytes) -> None:
    _embedded(embeddings.parse_request(raw, max_prompt_chars=MAX_PROMPT, max_text_bytes=1 << 20))


def read_gemini_embed(raw: bytes) -> None:
    _embedded(
        gemini.parse_embeddings(raw, model="m", path_model="m", batch=False, max_prompt_chars=MAX_PROMPT)
    )


def read_gemini_batch(raw: bytes) -> None:
    _embedded(
        gemini.parse_embeddings(raw, model="m", path_model="m", batch=True, max_prompt_chars=MAX_PROMPT)
    )


def read_message_batch(raw: bytes) -> None:
    asyncio.run(requests_file(raw, max_body_bytes=1 << 20))


def read_conversation_items(raw: bytes) -> None:
    given = json_object(raw).get("items")  # as `validated` reads ItemsCreate: its items anything
    StoredConversation("conv_1", items=tuple(items.added(given, held=set()))).to_bytes()


FACES: dict[str, tuple[list[dict[str, Any]], Callable[[bytes], None]]] = {
    "chat": (CHAT, read_chat),
    "tasks": ([{k: v for k, v in body.items() if k != "stream"} for body in CHAT], read_task),
    "legacy": (LEGACY, read_legacy),
    "responses": (RESPONSES, read_responses),
    "responses_count": (RESPONSES, read_responses_count),
    "anthropic": (ANTHROPIC, read_anthropic),
    "anthropic_count": (ANTHROPIC, read_anthropic_count),
    "gemini": (GEMINI, read_gemini),
    "gemini_count": (GEMINI_COUNTS, read_gemini_count),
    "embeddings": (EMBEDDINGS, read_embeddings),
    "gemini_embed": (GEMINI_EMBED, read_gemini_embed),
    "gemini_batch": (GEMINI_BATCH, read_gemini_batch),
    "message_batch": (MESSAGE_BATCH, read_message_batch),
    "conversation_items": (CONVERSATION_ITEMS, read_conversation_items),
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png_head(width: int, height: int) -> bytes:
    """A PNG's signature and header saying its size, nothing after it (a whole PNG that size is GBs)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + b"\0\0\0\0"


HOSTILE_BYTES = [
    _png_head(100_000, 100_000),
    _png_head(65_536, 1),
    _png_head(0, 0),
    media.gif(0, 0),
    media.jpeg(65535, 65535),
    media.webp(16384, 16384, "VP8L"),
    media.pdf(0),
    b"%PDF-1.4 /Type /Pages /Count 99999999",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"",
]
_payloads = st.one_of(
    st.sampled_from(["!!!", "", "AAA", "====", "a=b=", "é", PNG, PDF]),
    st.sampled_from(HOSTILE_BYTES).map(_b64),
    st.binary(max_size=40).map(_b64),
)
_media_types = st.sampled_from(
    ["image/png", "image/jpeg", "image/svg+xml", "application/pdf", "text/plain", "", "image/PNG", "x/y;a=b"]
)
_data_urls = st.builds(
    lambda t, p, b64: f"data:{t}{';base64' if b64 else ''},{p}", _media_types, _payloads, st.booleans()
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
SPECIAL = [  # as JSON text, read afresh for each body (one body's change is not another's)
    json.dumps(value)
    for value in [
        None, True, False, 0, -1, 1.5, 2**63, -(2**63) - 1, 10**20, 1e308, "", "x" * 257, "x" * 70_000, [],
        {}, [None], [[]], [{}], "\ud800", "a\udfffb", "\x00", "auto", "none", "required", "function", "user",
        "assistant", "tool", "model", "https://example.com/a.png", {"type": "text"}, {"type": "image_url"},
        {"type": "input_image"}, {"type": "function"}, {"type": "base64"}, {"type": "tool_use"},
    ]
] + ['{"a":' * 300 + "{}" + "}" * 300, "[" * 300 + "]" * 300]  # fmt: skip
DEEP_OBJECT, DEEP_LIST = '{"a":' * 300 + "{}" + "}" * 300, "[" * 300 + "]" * 300
# Every field of every valid body is replaced by each of these in turn (`make fuzz`: SPECIAL's too)
SWEEP = [
    json.dumps(value)
    for value in [
        None, True, -1, 1.5, 70_000, 10**20, "", "x" * 257, "x" * 5000, [], {}, [{}], "\ud800", "function",
        {"type": "function"},
        "data:image/png;base64,!!!", f"data:image/png;base64,{_b64(_png_head(100_000, 100_000))}",
        "https://example.com/a.png",
    ]
] + [DEEP_OBJECT, DEEP_LIST]  # fmt: skip
_hostile = st.one_of(st.sampled_from(SPECIAL).map(json.loads), _data_urls, _json, st.text(max_size=20))
_unknown = st.sampled_from(["extra", "x" * 300, "type", "id", "cache_control", "citations", "name"])


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*path, key))
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            yield from _paths(inner, (*path, n))


@st.composite
def mutated(draw: st.DrawFn, seeds: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(body))[1:]
        if not paths:  # all deleted
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        key, action = path[-1], draw(st.sampled_from(["replace"] * 6 + ["delete", "add", "repeat"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "add" and isinstance(parent[key], dict):
            parent[key][draw(_unknown)] = draw(_hostile)
        elif action == "repeat" and isinstance(parent[key], list) and parent[key]:
            parent[key] = [
                *parent[key],
                json.loads(json.dumps(parent[key][0])),
            ]  # duplicate ids, calls, results
        else:
            parent[key] = draw(_hostile)
    return body


# A Python repr, traceback or pydantic's own wording where a client reads our message
LEAKS = ("Traceback", "<class ", "object at 0x", "input_value=", "errors.pydantic.dev", "Error(")


def _param_root(param: str) -> str:
    return re.split(r"[.\[]", param, maxsplit=1)[0]


def check(read: Callable[[bytes], None], body: dict[str, Any], seeds: list[dict[str, Any]]) -> None:
    """`read` takes `body` or refuses it with a 4xx whose `param` (if any) starts with a field of the body
    or of the face's valid bodies (a missing field is named too)."""
    raw = json.dumps(body).encode()  # lone surrogates as \\ud800 escapes, as a client's JSON has them
    try:
        read(raw)
    except APIError as refused:
        assert 400 <= refused.status < 500, (refused.status, refused.message)
        assert not any(leak in refused.message for leak in LEAKS), refused.message
        assert len(refused.message) <= 2000, refused.message[:300]  # a client's long value not echoed whole
        if refused.param is not None:
            # the Anthropic face names a document block's field from the block (its errors carry no param)
            fields = {key for seed in seeds for key in seed} | set(body) | {"document"}
            assert _param_root(refused.param) in fields, (refused.param, refused.message)


@pytest.mark.parametrize("face", sorted(FACES))
def test_the_valid_bodies_are_taken(face: str) -> None:
    seeds, read = FACES[face]
    for body in seeds:
        read(json.dumps(body).encode())


def _swept(body: dict[str, Any], values: list[str]) -> Iterator[dict[str, Any]]:
    """`body` with each of its fields in turn replaced by each of `values` (JSON texts), deleted, given an
    unknown field nested 300 levels (an object) or its first item again (a list)."""
    text = json.dumps(body)
    for path in list(_paths(body))[1:]:
        for change in [*values, "delete", "add"]:
            changed = json.loads(text)
            parent = changed
            for key in path[:-1]:
                parent = parent[key]
            key = path[-1]
            if change == "delete":
                del parent[key]
            elif change == "add" and isinstance(parent[key], dict):
                parent[key]["extra"] = json.loads(DEEP_OBJECT)
            elif change == "add" and isinstance(parent[key], list) and parent[key]:
                parent[key].append(json.loads(json.dumps(parent[key][0])))
            elif change != "add":
                parent[key] = json.loads(change)
            yield changed


@pytest.mark.parametrize("face", sorted(FACES))
def test_every_field_of_a_valid_body_made_hostile_is_taken_or_refused_with_a_4xx(face: str) -> None:
    seeds, read = FACES[face]
    values = [*SPECIAL, *SWEEP] if LONG else SWEEP
    for seed in seeds:
        for body in _swept(seed, values):
            check(read, body, seeds)


@pytest.mark.parametrize("face", sorted(FACES))
def test_a_mutated_body_is_taken_or_refused_with_a_4xx_naming_a_field(face: str) -> None:
    seeds, read = FACES[face]

    @FUZZ
    @given(body=mutated(seeds))
    def run(body: dict[str, Any]) -> None:
        check(read, body, seeds)

    run()
