"""A prompt a provider refused as too long for its context window (a pinned model, or every candidate)
reaches the client as the context overflow it is, in each face's words: OpenAI's code
`context_length_exceeded` (`param: messages`), on which LangChain raises its ContextOverflowError, and on
the Anthropic face Anthropic's `prompt is too long: N tokens > M maximum` (or the `max_tokens` form), on
which LangChain raises it too and Claude Code compacts or lowers `max_tokens`. Before, it was
`provider_context_too_long` in the provider's words, which neither recognises."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from starlette.requests import Request

from switchyard.common.events import TaskFailed
from switchyard.gateway.errors import APIError, error_response
from switchyard.gateway.outcomes import raise_for_failure

pytestmark = pytest.mark.unit

OPENAI = (
    "openai 400: This model's maximum context length is 128000 tokens. However, your messages resulted in "
    "130412 tokens. Please reduce the length of the messages."
)
VLLM = (
    "openai 400: This model's maximum context length is 32768 tokens. However, you requested 33000 tokens "
    "(1000 in the messages, 32000 in the completion). Please reduce the length of the messages or completion."
)
LLAMA_CPP = "local: Requested tokens (9031) exceed context window of 2048"
ANTHROPIC = "anthropic 400 invalid_request_error: prompt is too long: 210412 tokens > 200000 maximum"
GEMINI = "gemini 400: The input token count (1048999) exceeds the maximum number of tokens allowed (1048576)."


def _refused(last: str) -> APIError:
    failed = TaskFailed(
        task_id="t1",
        tenant_id="acme",
        error_code="provider_context_too_long",
        error_message=f"every candidate failed (m: context_too_long); last: {last}",
        failed_at=datetime.now(UTC),
    )
    with pytest.raises(APIError) as raised:
        raise_for_failure(failed)
    return raised.value


def _said(exc: APIError, path: str) -> tuple[int, dict[str, object]]:
    request = Request({"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""})
    response = error_response(request, exc)
    return response.status_code, orjson.loads(response.body)["error"]


def test_the_openai_faces_say_context_length_exceeded() -> None:
    exc = _refused(OPENAI)
    status, error = _said(exc, "/v1/chat/completions")
    assert (status, error["code"], error["param"], error["type"]) == (
        400,
        "context_length_exceeded",
        "messages",
        "invalid_request_error",
    )
    assert error["message"] == exc.message  # the provider's own words stay


@pytest.mark.parametrize(
    ("last", "says"),
    [
        (OPENAI, "prompt is too long: 130412 tokens > 128000 maximum ("),
        (LLAMA_CPP, "prompt is too long: 9031 tokens > 2048 maximum ("),
        (ANTHROPIC, "prompt is too long: 210412 tokens > 200000 maximum ("),
        (GEMINI, "prompt is too long: 1048999 tokens > 1048576 maximum ("),
        (
            VLLM,
            "input length and `max_tokens` exceed context limit: 1000 + 32000 > 32768, decrease input length "
            "or `max_tokens` and try again (",
        ),
        ("openai 400: context_length_exceeded", "prompt is too long ("),  # no numbers to give
    ],
)
def test_the_anthropic_face_says_it_in_anthropics_words(last: str, says: str) -> None:
    exc = _refused(last)
    status, error = _said(exc, "/v1/messages")
    assert status == 400 and error["type"] == "invalid_request_error"
    assert error["message"] == f"{says}{exc.message})"
