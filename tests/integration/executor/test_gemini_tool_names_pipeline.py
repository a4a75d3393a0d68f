"""Google's GenAI SDK (`google-genai`) on the Gemini face, with a function named as Gemini allows
(`weather.get`), through the real pipeline (`tools_stack`: gateway, router and executor as processes on a
real nats-server, each provider a local server speaking its protocol and refusing what its API refuses) to
an OpenAI-compatible model and to Anthropic's: a function-calling chat, whole and streamed. Both upstreams
refused the request over the name (a 400 `provider_bad_request` to the client); now the call comes back
under its declared name and the function's response goes back with it."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import types

from switchyard.common.events import TaskSubmitted
from tests.integration.executor.tools_stack import Stack, classifier, stack

pytestmark = pytest.mark.integration
__all__ = ["classifier", "stack"]  # fixtures

WEATHER = types.FunctionDeclaration(
    name="weather.get",
    description="The weather in a city.",
    parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"]
    ),
)


@pytest.mark.parametrize("model", ["oai/tool-call", "ant/tool-call"])
async def test_a_dotted_function_name_calls_and_answers_through_each_provider(
    stack: Stack, classifier: list[TaskSubmitted], model: str
) -> None:
    options = types.HttpOptions(base_url=stack.base, api_version="v1beta", timeout=30_000)
    sdk = genai.Client(api_key=stack.org.keys["member"], http_options=options).aio
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    for streamed in (False, True):
        chat = sdk.chats.create(model=model, config=config)
        if streamed:
            chunks = [c async for c in await chat.send_message_stream("Weather in Paris?")]
            calls = [call for c in chunks for call in c.function_calls or []]
        else:
            calls = (await chat.send_message("Weather in Paris?")).function_calls or []
        assert [(c.name, c.args) for c in calls] == [("weather.get", {"city": "Paris"})], (model, streamed)
        reply = types.Part.from_function_response(name="weather.get", response={"output": "sunny, 21 C"})
        reply.function_response.id = calls[0].id  # type: ignore[union-attr]
        answer = await chat.send_message(reply)  # the stand-in calls again whenever it has tools
        assert [c.name for c in answer.function_calls or []] == ["weather.get"], (model, streamed)
        # the upstream got the tools and the conversation's call under the plain name
        sent = (stack.openai if model.startswith("oai/") else stack.anthropic).requests[-1].body
        if model.startswith("oai/"):
            assert [t["function"]["name"] for t in sent["tools"]] == ["weather_get"]
            assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "weather_get"
            assert sent["messages"][-1]["content"] == "sunny, 21 C"
        else:
            assert [t["name"] for t in sent["tools"]] == ["weather_get"]
            assert sent["messages"][-2]["content"][-1]["name"] == "weather_get"
