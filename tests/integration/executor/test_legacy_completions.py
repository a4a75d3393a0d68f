"""OpenAI's legacy completions through the real pipeline (`tools_stack`), driven by the OpenAI SDK's
`completions`: the prompt reaches the provider as the user's turn of a chat request (with OpenAI's default of
16 tokens), and the answer comes back as a text completion, whole and streamed."""

from __future__ import annotations

import openai
import pytest

from switchyard.common.events import TaskSubmitted
from tests.integration.executor.tools_stack import Stack, classifier, openai_client, stack

pytestmark = pytest.mark.integration
__all__ = ["classifier", "stack"]  # fixtures


async def test_a_legacy_completion_whole_and_streamed(stack: Stack, classifier: list[TaskSubmitted]) -> None:
    client = openai_client(stack)
    reply = await client.completions.create(model="oai/tool-call", prompt="Say this is a test")
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert reply.choices[0].text == "Hello! You said: Say this is a test"
    assert reply.choices[0].finish_reason == "stop" and reply.model == "oai/tool-call"
    assert reply.usage is not None and reply.usage.total_tokens > 0
    sent = stack.openai.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"] == [{"role": "user", "content": "Say this is a test"}]
    assert sent.body["max_tokens"] == 16 and classifier[-1].request.max_tokens == 16

    stream = await client.completions.create(
        model="oai/tool-call",
        prompt=["Once upon a time"],
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert "".join(texts) == "Hello! You said: Once upon a time" and len(texts) > 2  # streamed as it came
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert stack.openai.requests[-1].body["max_tokens"] == 50

    with pytest.raises(openai.BadRequestError) as refused:
        await client.completions.create(model="oai/tool-call", prompt="def f():", suffix="\n    return 1")
    assert refused.value.body["param"] == "suffix"  # type: ignore[index]
    assert refused.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
