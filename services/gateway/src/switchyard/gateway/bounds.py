"""How many items the gateway reads from one request body, counted on the JSON as read, before any of it is
validated or converted. Reading a body runs before the rate limits and costs a few microseconds per item
whatever its size: a body of the largest size (SWITCHYARD_MAX_BODY_BYTES) made of hundreds of thousands of
empty messages or parts held the event loop (every request of the replica waiting) for seconds. These
counts bound its CPU (0.1-0.8 s at the limit on a 2-core machine, see bench/parse_cost.py); each is far
above what clients send (a coding agent's longest session: a few thousand messages and blocks) and refused
with a 400 `array_above_max_length` naming the array. A body past READ_INLINE_BYTES is read on a worker
thread (`read_off_loop`), so the loop is held at most ~0.1-0.3 s by any body the limits take
(bench/loop_lag.py).

- A conversation (chat `messages`, Responses `input` with the stored conversation it continues,
  Anthropic `messages`, Gemini `contents`) holds at most MAX_ITEMS items in all: its turns, their content
  parts (blocks, Gemini parts), their tool calls, and the blocks of Anthropic tool results. Anthropic
  documents at most 100,000 messages per request, the only provider behind the gateway that documents a
  number (OpenAI and Google document none): the same number counts the parts too.
- Function declarations: at most MAX_TOOLS in all of a Gemini request's tools (the pipeline's, and OpenAI's
  and Anthropic's, limit of 128 tools, refused after all of them were converted).
- Nesting: a request's JSON is written again as a task on the bus, by serializers that stop at ~255
  levels (orjson's and pydantic's); deeper values (a tool's schema or a call's arguments nested hundreds
  of levels deep) are a 400 `nesting_too_deep` naming where, not a 500. A count endpoint's tools are
  written by the count itself (`check_counted_tools`).
- Stop sequences, as each face's provider documents them: OpenAI's `stop` (chat and legacy completions) up
  to MAX_STOP (4); Gemini's `stopSequences` up to 5 (its request model); Anthropic documents no number for
  `stop_sequences`, which are held to MAX_ITEMS. None documents a length for one sequence (the body's limit
  bounds it). Before, a list of ~2 M strings was read and carried to the provider.
- Embeddings: OpenAI's 2,048 inputs (`MAX_EMBEDDING_INPUTS`, already refused) and its 300,000 tokens in
  all the inputs given as token ids (MAX_EMBEDDING_TOKENS); Gemini's 100 requests of a batch."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, TypeVar

import orjson

from switchyard.common import collector
from switchyard.common.events.tasks import MAX_EMBEDDING_INPUTS, ToolSpec
from switchyard.gateway.errors import InvalidRequest

P = ParamSpec("P")
R = TypeVar("R")
MAX_ITEMS = 100_000
MAX_TOOLS = 128
MAX_EMBEDDING_TOKENS = 300_000  # OpenAI's: "summed across all inputs in a single request"
MAX_STOP = 4  # OpenAI's `stop`: "Up to 4 sequences where the API will stop generating further tokens"
TOO_LONG = "array_above_max_length"  # OpenAI's code for an array longer than it takes
# A body up to this size is read on the event loop (at most ~8,000 items: ~0.05 s); larger, on a thread
READ_INLINE_BYTES = 256 * 1024


NESTING = "nesting_too_deep"


def too_deep(param: str | None, why: object = None) -> InvalidRequest:
    """`why`: our words for it, if any; an encoder's exception is not shown (orjson says a depth past its
    limit as "Circular reference detected", which misleads the client)."""
    said = f" ({why})" if isinstance(why, str) else ""
    return InvalidRequest(
        f"{param or 'The request'}: nested too deeply to be carried{said}: JSON nested more than ~250 "
        "levels deep (schemas and arguments included) cannot be written as a task",
        code=NESTING,
        param=param,
    )


def json_text(value: Any, *, param: str) -> str:
    """`value` (a tool call's arguments, a function's response) as JSON text; 400 `nesting_too_deep` when
    nested deeper than it can be written."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise too_deep(param, exc) from None


def check_counted_tools(tools: list[ToolSpec] | None) -> None:
    """The tools of a request whose tokens are counted (the count endpoints' bodies, never written as a
    task, whose writing refuses them): each is written as JSON by the count (`tokens.count_prompt`), so
    nested no deeper than can be written (400 `nesting_too_deep` naming `tools`)."""
    for tool in tools or []:
        try:
            orjson.dumps(tool.function.model_dump(exclude_none=True))
        except (ValueError, orjson.JSONEncodeError) as exc:
            raise too_deep("tools", exc) from None


def check_kept(item: Any, *, param: str) -> None:
    """An item kept as it was sent (a stored response's input item, a Conversations item), which its record
    writes again as JSON a list in an object down: nested no deeper than that can be written (orjson reads
    1,024 levels, writes ~254), else 400 `nesting_too_deep` naming it. The task holds only what it carries
    of an item, so the task's writing does not refuse it."""
    try:
        orjson.dumps({"items": [item]})
    except orjson.JSONEncodeError as exc:
        raise too_deep(param, exc) from None


def too_long(param: str, length: int, limit: int) -> InvalidRequest:
    """OpenAI's error for an array longer than it takes, in its words."""
    return InvalidRequest(
        f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, but got an array "
        f"with length {length} instead.",
        code=TOO_LONG,
        param=param,
    )


def check_conversation(
    turns: Any, *, param: str, parts: tuple[str, ...], nested: tuple[tuple[str, ...], ...] = ()
) -> None:
    """`turns` (the body's list of messages, input items or contents; anything else is left to the parser)
    with their lists under the keys `parts` (and the lists each of those parts holds at a path of `nested`:
    Anthropic's tool results' blocks, Gemini's function responses' parts) hold at most MAX_ITEMS items in
    all. Counting stops at the
    limit: it costs at most what reading that many items would."""
    if not isinstance(turns, list):
        return
    if len(turns) > MAX_ITEMS:
        raise too_long(param, len(turns), MAX_ITEMS)
    count = len(turns)
    for turn in turns:
        if type(turn) is not dict:  # `type is`, not isinstance: JSON as read, and ~2x faster per item
            continue
        for key in parts:
            inner = turn.get(key)
            if type(inner) is not list:
                continue
            count += len(inner)
            if nested and count <= MAX_ITEMS:
                count += _nested(inner, nested)
            if count > MAX_ITEMS:
                raise _too_many(param, MAX_ITEMS)


def check_stop(stop: Any, *, param: str, limit: int = MAX_STOP) -> None:
    """A list of stop sequences (a string is one) holds at most `limit`."""
    if isinstance(stop, list) and len(stop) > limit:
        raise too_long(param, len(stop), limit)


def check_blocks(blocks: Any, *, param: str) -> None:
    """A list beside the conversation (Anthropic's system blocks, Gemini's system instruction parts)."""
    if isinstance(blocks, list) and len(blocks) > MAX_ITEMS:
        raise too_long(param, len(blocks), MAX_ITEMS)


def check_declarations(tools: Any, *, param: str) -> None:
    """Gemini's function declarations: at most MAX_TOOLS in all its tools (each tool may hold many)."""
    if not isinstance(tools, list):
        return
    count = sum(len(d) for d in _lists(tools, ("functionDeclarations", "function_declarations")))
    if count > MAX_TOOLS:
        raise InvalidRequest(
            f"{param}: {count} function declarations in all; at most {MAX_TOOLS} are taken",
            code=TOO_LONG,
            param=param,
        )


def check_token_ids(value: Any, *, param: str) -> None:
    """An embeddings `input` of token ids (one list of ids, or a list of them) holds at most
    MAX_EMBEDDING_TOKENS ids in all, as OpenAI takes (the length of each list only: its ids are checked
    after)."""
    if not isinstance(value, list) or not value:
        return
    if isinstance(value[0], int):
        count = len(value)
    elif len(value) > MAX_EMBEDDING_INPUTS:
        return  # too many inputs, as the request's validation says first
    else:
        count = sum(len(one) for one in value if isinstance(one, list))
    if count > MAX_EMBEDDING_TOKENS:
        raise InvalidRequest(
            f"Requested {count} tokens, max {MAX_EMBEDDING_TOKENS} tokens per request",
            code="max_tokens_per_request",
            param=param,
        )


def collector_paused() -> AbstractContextManager[None]:
    """The collector paused while a body is read (`collector.paused`), what the read allocated then going
    to the oldest generation: the collections that triggered during reads were 40-60% of a large body's
    read (bench/parse_cost.py), and after it they walked all of it, in whatever request came next. A read
    on a thread (`read_off_loop`) pauses it for the whole process, for that read at most."""
    return collector.paused(promote=True)


async def read_off_loop(read: Callable[[], R], *, size: int) -> R:
    """`read()` (a face's parser of a body of `size` bytes) on a worker thread when the body is larger than
    READ_INLINE_BYTES: the largest bodies the limits take read in up to ~1 s (tool calls and their results,
    bench/parse_cost.py), which on the event loop every request of the replica waited for. On a thread the
    loop goes on between the interpreter's switches (5 ms); what holds it still is the parser's longest call
    into C (reading the JSON, a model's validation: up to ~0.25 s for a max-size body). A smaller body is
    read where it is, the thread's hand-over costing more than its read."""
    if size <= READ_INLINE_BYTES:
        return read()
    return await asyncio.to_thread(read)


def reads(function: Callable[P, R]) -> Callable[P, R]:
    """`function` (a face's parser) run with the collector paused (`collector_paused`)."""

    @functools.wraps(function)
    def read(*args: P.args, **kwargs: P.kwargs) -> R:
        with collector_paused():
            return function(*args, **kwargs)

    return read


def _nested(inner: list[Any], paths: tuple[tuple[str, ...], ...]) -> int:
    count = 0
    for part in inner:
        for path in paths:
            value: Any = part
            for key in path:
                value = value.get(key) if type(value) is dict else None
            if type(value) is list:
                count += len(value)
    return count


def _lists(items: Iterable[Any], keys: tuple[str, ...]) -> Iterable[list[Any]]:
    for item in items:
        if isinstance(item, dict):
            for key in keys:
                value = item.get(key)
                if isinstance(value, list):
                    yield value


def _too_many(param: str, limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid '{param}': more than {limit} items in all (turns, their content parts or blocks and tool "
        f"calls): at most {limit} are read from one request",
        code=TOO_LONG,
        param=param,
    )
