"""The pipeline the tools and thinking tests run against: the gateway, router and executor as processes on
a real nats-server, each provider a local server speaking its protocol (OpenAI, Anthropic, Gemini); a
fixture plays the classifier."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import nats
import openai
import pytest
import yaml

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import Classification, TaskClassified, TaskSubmitted
from tests.integration.gateway.harness import Org, gateways, make_org
from tests.integration.pipeline.services import Fleet
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_gemini import FakeGemini
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer


def _model(provider: str, upstream: str, capabilities: list[str]) -> dict[str, Any]:
    return {
        "id": f"{provider}/{upstream}",
        "provider": provider,
        "upstream": upstream,
        "tier": "fast",
        "input_per_1k": 0.0001,
        "output_per_1k": 0.0002,
        "context_window": 8000,
        "capabilities": capabilities,
    }


# In preference order: a model with no capabilities, one with tools only, then tools and JSON mode (each
# of those reads PDFs).
POLICY = {
    "version": "tools",
    "models": [
        _model("plain", "model-a", []),
        _model("ant", "tool-call", ["tools", "vision", "pdf", "reasoning"]),
        _model("oai", "tool-call", ["tools", "json_mode", "vision", "pdf", "reasoning"]),
        _model("gem", "tool-call", ["tools", "json_mode", "vision", "pdf"]),
        # last, so never picked for `auto`: a model that takes only adaptive thinking, named by clients
        _model("ant", "claude-opus-4-7:tool-call", ["tools", "vision", "reasoning"]),
        # and one that takes tools only through OpenAI's Responses API (the `openai` provider: OpenAI
        # itself, as OPENAI_ITSELF says of the fake)
        _model("openai", "gpt-6.1-sol", ["tools", "json_mode", "vision", "pdf", "reasoning"]),
    ],
    "strategies": {"cascade": {"enabled": False}, "parallel": {"enabled": False}},
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@dataclass
class Stack:
    base: str
    org: Org
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini
    nats_url: str


def common_env(server: NatsServer, db_url: str, policy: Path) -> dict[str, str]:
    """What every process of such a stack is started with: the bus, the database, the policy, and no
    provider keys from the environment."""
    return {
        "SWITCHYARD_NATS_URL": server.url,
        "SWITCHYARD_DATABASE_URL": db_url,
        "SWITCHYARD_POLICY_PATH": str(policy),
        **{f"{p}_API_KEY": "" for p in ("OPENAI", "ANTHROPIC", "GEMINI", "GOOGLE")},
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("tools")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    policy = tmp / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    fakes = FakeOpenAI(), FakeAnthropic(), FakeGemini()
    base_env = common_env(server, db_url, policy)
    fleet = Fleet(tmp, base_env)
    try:
        with (
            BackgroundServer(fakes[0].app) as o,
            BackgroundServer(fakes[1].app) as a,
            BackgroundServer(fakes[2].app) as g,
        ):
            extra = {
                "plain": {"kind": "openai", "base_url": f"{o.url}/v1", "api_key": fakes[0].api_key},
                "oai": {"kind": "openai", "base_url": f"{o.url}/v1", "api_key": fakes[0].api_key},
                "ant": {"kind": "anthropic", "base_url": a.url, "api_key": fakes[1].api_key},
                "gem": {"kind": "gemini", "base_url": g.url, "api_key": fakes[2].api_key},
            }
            env = {
                "SWITCHYARD_LOCAL_ENABLED": "false",
                "SWITCHYARD_EXTRA_PROVIDERS": json.dumps(extra),
                "OPENAI_API_KEY": fakes[0].api_key,
                "OPENAI_BASE_URL": f"{o.url}/v1",
                "OPENAI_ITSELF": "true",
            }
            fleet.start("switchyard.router", name="router")  # they start while the gateway does
            fleet.start("switchyard.executor", name="executor", env=env)
            with gateways(server, db_url, tmp, env={**base_env, "SWITCHYARD_TASK_TIMEOUT_S": "20"}) as (
                base,
            ):
                fleet.wait_ready()
                org = asyncio.run(make_org(db_url, "acme", roles=("member",)))
                yield Stack(base, org, *fakes, server.url)
    finally:
        fleet.stop_all()
        server.stop()


@pytest.fixture
async def classifier(stack: Stack) -> AsyncIterator[list[TaskSubmitted]]:
    """Plays the classifier: every submitted task is classified as an easy question."""
    nc = await nats.connect(stack.nats_url)
    seen: list[TaskSubmitted] = []
    publisher = bus.EventPublisher(nc.jetstream(), source="test/classifier")

    async def on_task(msg: Any) -> None:
        _, task = decode(msg.data, (TaskSubmitted,))
        assert isinstance(task, TaskSubmitted)
        seen.append(task)
        classification = Classification(
            type="qa", confidence=0.9, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1
        )
        await publisher.publish(
            TaskClassified(task=task, classification=classification),
            event_id=ids.derived_id(task.task_id, "classified"),
            tenant_id=task.tenant_id,
            event_subject=task.task_id,
        )

    await nc.subscribe(subjects.TASK_SUBMITTED, cb=on_task)
    await nc.flush()
    yield seen
    await nc.close()


def anthropic_client(stack: Stack) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=stack.base, api_key=stack.org.keys["member"], max_retries=0)


def openai_client(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{stack.base}/v1", api_key=stack.org.keys["member"], max_retries=0, timeout=30
    )
