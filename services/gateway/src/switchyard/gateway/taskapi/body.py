"""The task API's request body: an OpenAI chat request, read as strictly as the gateway's own APIs read
theirs (admin, feedback: a field they do not know is refused). Chat completions accept and ignore fields
they do not know, as OpenAI-compatible servers do for the SDKs' sake; nobody's SDK writes a task's body,
so a misspelt field (`max_token`) is the client's 400, not a task run without it."""

from __future__ import annotations

from switchyard.gateway import completions
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.schemas import UNSUPPORTED, ChatCompletionRequest, Unsupported

# OpenAI's fields that change nothing Switchyard returns (chat completions accept them too); the fields
# refused when they ask for something (`UNSUPPORTED`) pass with their off values.
IGNORED = ("store", "metadata", "service_tier", "prediction", "safety_identifier")
KNOWN = frozenset(ChatCompletionRequest.model_fields) | frozenset(IGNORED) | frozenset(UNSUPPORTED)
REFUSED: Unsupported = {
    **UNSUPPORTED,
    "stream": (
        lambda v: v is True,
        "the task API answers whole: read the result with GET /v1/tasks/{id}; for the text as it comes, "
        "send the request to POST /v1/chat/completions",
    ),
}


def parse(body: bytes, *, max_prompt_chars: int) -> ChatCompletionRequest:
    try:
        return completions.parse_request(
            body, max_prompt_chars=max_prompt_chars, unsupported=REFUSED, known=KNOWN, streams=False
        )
    except InvalidRequest as exc:
        if exc.code == "unknown_parameter" and exc.param == "input":  # an embeddings request
            exc.message += "; the task API runs chat tasks: embeddings are served by POST /v1/embeddings"
        raise
