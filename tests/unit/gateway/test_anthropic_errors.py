"""The Anthropic face's errors (`errors.error_response` on `/v1/messages`): Anthropic's statuses and types
(504 `timeout_error`, 529 `overloaded_error`, other 4xx `invalid_request_error`), a too small context
window in Anthropic's words, and Anthropic's `error.details`."""

from __future__ import annotations

import orjson
import pytest
from starlette.requests import Request

from switchyard.gateway.errors import (
    APIError,
    InvalidRequest,
    ServiceUnavailable,
    TaskTimeout,
    error_response,
)

pytestmark = pytest.mark.unit

# The router's message (`routing._unservable`), as the task's failure carries it to the gateway.
TOO_LONG = (
    "the prompt (about {} tokens) and max_tokens (100) exceed the context window of every available model "
    "(the largest, plain/model-a, takes 8000 tokens): shorten the prompt or lower max_tokens"
)


def _answer(exc: APIError, path: str = "/v1/messages") -> tuple[int, dict[str, object]]:
    request = Request({"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""})
    response = error_response(request, exc)
    return response.status_code, orjson.loads(response.body)


def test_statuses_and_types_are_anthropics() -> None:
    status, body = _answer(TaskTimeout("The task did not finish within 3 s"))
    assert (status, body["error"]["type"]) == (504, "timeout_error")  # type: ignore[index]
    busy = ServiceUnavailable("every candidate was at capacity", code="provider_overloaded")
    status, body = _answer(busy)
    assert (status, body["error"]["type"]) == (529, "overloaded_error")  # type: ignore[index]
    assert _answer(busy, "/v1/chat/completions")[0] == 503  # the OpenAI face's
    stopping = ServiceUnavailable("the bus is down", code="bus_unavailable")
    assert _answer(stopping)[0] == 503
    not_allowed = APIError("method GET not allowed", status=405, code="method_not_allowed")
    assert _answer(not_allowed)[1]["error"]["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        (9007, "prompt is too long: 9007 tokens > 8000 maximum ("),
        (
            7950,
            "input length and `max_tokens` exceed context limit: 7950 + 100 > 8000, decrease input length "
            "or `max_tokens` and try again (",
        ),
    ],
)
def test_a_context_window_too_small_is_said_in_anthropics_words(prompt: int, says: str) -> None:
    ours = TOO_LONG.format(prompt)
    _, body = _answer(InvalidRequest(ours, code="context_length_exceeded", param="messages"))
    assert body["error"]["message"] == f"{says}{ours})"  # type: ignore[index]
    _, body = _answer(InvalidRequest(ours, code="context_length_exceeded"), "/v1/chat/completions")
    assert body["error"]["message"] == ours  # type: ignore[index]
    named = (  # a model the client named (`routing._too_long_for`)
        "the prompt (about 2500 tokens) exceeds the context window of the model "
        "local/smollm2-135m-instruct (2048 tokens): shorten the prompt"
    )
    _, body = _answer(InvalidRequest(named, code="context_length_exceeded", param="messages"))
    assert body["error"]["message"] == f"prompt is too long: 2500 tokens > 2048 maximum ({named})"  # type: ignore[index]
    other = InvalidRequest("the prompt is odd", code="context_length_exceeded")  # not the router's words
    assert _answer(other)[1]["error"]["message"] == "the prompt is odd"  # type: ignore[index]


def test_details_ride_on_the_anthropic_error_only() -> None:
    refused = InvalidRequest("thread: not served", code="unsupported_parameter", param="thread")
    refused.details = {"error_code": "thread_unsupported_request"}
    assert _answer(refused)[1]["error"]["details"] == {"error_code": "thread_unsupported_request"}  # type: ignore[index]
    assert "details" not in _answer(refused, "/v1/chat/completions")[1]["error"]  # type: ignore[operator]
