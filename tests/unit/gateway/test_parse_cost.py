"""What a request body costs the gateway's event loop before admission (every request of the replica waits
while it is read): reading grows linearly with the body (a shape and four times it, CPU time, best of
three: a linear read takes ~4x, a quadratic one ~16x; the bound is generous), and what cannot be read
cheaply enough is refused by a documented limit, counted on the JSON as read."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import orjson

from switchyard.gateway import responses
from switchyard.gateway.gemini.request import parse_request as parse_gemini

LINEAR_BOUND = 7.0  # a linear read of four times the items: ~4x (caches and allocation add some)
MAX_PROMPT = 10**9


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
