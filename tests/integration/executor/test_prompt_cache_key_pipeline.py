"""A client's `prompt_cache_key` through the gateway, router and executor (processes on a real nats-server)
to a local OpenAI stand-in: OpenAI itself is sent the key scoped to the task's tenant on chat completions
and the Responses API, from either face; another OpenAI-compatible server is sent none. The task on the bus
carries the key as the client gave it."""

from __future__ import annotations

import pytest

from switchyard.common.events import TaskSubmitted
from switchyard.executor.providers.base import cache_key_for
from tests.integration.executor.tools_stack import WEATHER, Stack, classifier, openai_client, stack

__all__ = ["classifier", "stack"]  # the fixtures, used by name
pytestmark = pytest.mark.integration

ASK = [{"role": "user", "content": "Summarise our handbook's first chapter."}]


async def test_openai_itself_gets_the_tenants_scoped_key_on_both_apis_and_faces(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    client = openai_client(stack)
    scoped = cache_key_for(stack.org.id, "user-42")
    await client.chat.completions.create(
        model="openai/gpt-6.1-sol",
        messages=ASK,  # type: ignore[arg-type]
        extra_body={"prompt_cache_key": "user-42"},
    )
    sent = stack.openai.requests[-1]
    assert sent.path.endswith("/chat/completions") and sent.body["prompt_cache_key"] == scoped
    assert classifier[-1].request.prompt_cache_key == "user-42"
    # with a tool this model is called through OpenAI's Responses API; asked on the Responses face
    await client.responses.create(
        model="openai/gpt-6.1-sol",
        input="What is the weather in Paris?",
        tools=[{"type": "function", **WEATHER["function"]}],  # type: ignore[list-item, dict-item]
        prompt_cache_key="user-42",
        max_output_tokens=64,
    )
    sent = stack.openai.requests[-1]
    assert sent.path.endswith("/responses") and sent.body["prompt_cache_key"] == scoped
    assert "user-42" not in str(sent.body)


async def test_another_openai_compatible_server_is_sent_no_key(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    await openai_client(stack).chat.completions.create(
        model="oai/tool-call",
        messages=ASK,  # type: ignore[arg-type]
        extra_body={"prompt_cache_key": "user-42"},
    )
    assert "prompt_cache_key" not in stack.openai.requests[-1].body
    assert classifier[-1].request.prompt_cache_key == "user-42"
