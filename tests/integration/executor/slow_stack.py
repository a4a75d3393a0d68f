"""A pipeline with small bounds for the tests of slow models: the gateway, router and executor as
processes on a real nats-server, one OpenAI stand-in as the provider `plain` (its models `drip-<seconds>`
drip their words, `slow-<seconds>` answer, even their response's status, after that long, `think-<seconds>`
begin at once and send their first word after that long); a fixture plays the classifier."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from switchyard.cli.processes import NatsServer
from tests.integration.executor.tools_stack import _model, common_env
from tests.integration.gateway.harness import Org, gateways, make_org
from tests.integration.pipeline.services import Fleet
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer


@dataclass
class Stack:
    base: str
    org: Org
    fake: FakeOpenAI
    nats_url: str


@contextmanager
def slow_stack(
    tmp: Path, upstreams: list[str], *, executor: dict[str, str], gateway: dict[str, str]
) -> Iterator[Stack]:
    """The stack, its policy listing `plain/<upstream>` for each of `upstreams` (no cascades, no races),
    the executor and the gateway run with these settings besides the common ones."""
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    policy = tmp / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "version": tmp.name,
                "models": [_model("plain", upstream, []) for upstream in upstreams],
                "strategies": {"cascade": {"enabled": False}, "parallel": {"enabled": False}},
            }
        )
    )
    fake = FakeOpenAI()
    base_env = common_env(server, db_url, policy)
    fleet = Fleet(tmp, base_env)
    try:
        with BackgroundServer(fake.app) as o:
            extra = {"plain": {"kind": "openai", "base_url": f"{o.url}/v1", "api_key": fake.api_key}}
            env = {"SWITCHYARD_LOCAL_ENABLED": "false", "SWITCHYARD_EXTRA_PROVIDERS": json.dumps(extra)}
            fleet.start("switchyard.router", name="router")
            fleet.start("switchyard.executor", name="executor", env={**env, **executor})
            with gateways(server, db_url, tmp, env={**base_env, **gateway}) as (base,):
                fleet.wait_ready()
                org = asyncio.run(make_org(db_url, "acme", roles=("member",)))
                yield Stack(base, org, fake, server.url)
    finally:
        fleet.stop_all()
        server.stop()
