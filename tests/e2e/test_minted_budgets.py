"""A key's budget bounds what the keys it minted spend together, on the stack `make run` starts with two
gateway replicas (SO_REUSEPORT: the kernel spreads the connections) and the OpenAI stand-in as provider:
a key with a $0.10 lifetime budget mints four keys of $0.10 each, and sixteen requests at once through
them ($0.02 worst case each, $0.32 asked in all) spend no more than $0.10 together."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import yaml

from tests.e2e.conftest import RunningStack, start_stack, stop_stack
from tests.e2e.test_hard_budgets import POLICY, _admin, _chat, _spent
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.e2e
BUDGET = 0.10
ASKED = 2_000  # output tokens a request asks: $0.02 at $0.01/1K


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    openai = FakeOpenAI()
    with BackgroundServer(openai.app) as server:
        base = tmp_path_factory.mktemp("minted-budgets")
        (base / "policy.yaml").write_text(yaml.safe_dump(POLICY))
        env = {
            "OPENAI_API_KEY": openai.api_key,
            "OPENAI_BASE_URL": f"{server.url}/v1",
            "SWITCHYARD_POLICY_PATH": str(base / "policy.yaml"),
            "SWITCHYARD_GATEWAY_REPLICAS": "2",
        }
        running = start_stack(base / "var", base / "up.log", env=env)
        try:
            yield running
        finally:
            stop_stack(running)


def _mint(stack: RunningStack, headers: dict[str, str], name: str) -> tuple[str, str]:
    body = {"name": name, "max_budget_usd": BUDGET}
    made = httpx.post(f"{stack.base_url}/v1/admin/keys", json=body, headers=headers, timeout=30)
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["key"]


def test_keys_minted_from_a_budgeted_key_spend_its_budget_together(stack: RunningStack) -> None:
    parent_id, parent = _mint(stack, _admin(stack), "parent")
    children = [_mint(stack, {"Authorization": f"Bearer {parent}"}, f"child {i}") for i in range(4)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(
                lambda key: _chat(stack, key, model="w-openai", max_tokens=ASKED),
                [k for _, k in children] * 4,
            )
        )
    codes = sorted(a.status_code for a in answers)
    spent = [_spent(stack, key_id) for key_id, _ in children]
    total = _spent(stack, parent_id)
    assert sum(spent) <= BUDGET + 1e-6, f"${sum(spent):.6f} spent by four keys minted from a ${BUDGET} key"
    assert abs(total - sum(spent)) < 1e-6, (total, spent)
    assert set(codes) <= {200, 429} and codes.count(200) >= 4, codes
    refused = [a.json()["error"] for a in answers if a.status_code == 429]
    assert refused and all(e["code"] == "budget_exceeded" for e in refused), refused
    assert any("minting key's" in e["message"] for e in refused), refused
