"""Hard budgets hold on the stack `make run` starts, with the OpenAI, Gemini and Anthropic stand-ins as
its providers: a key with a lifetime budget of its own (`max_budget_usd`) is never charged more than it,
whatever its requests leave out or its tasks run.

- A request without an output limit is sent the output its reservation pays for (4,096 tokens; the
  provider ends the answer at it: finish reason `length`), near the end of the budget what is left pays
  for, on every face and provider; the models here would write 20,000 tokens ($0.20) on a $0.05 budget.
- An `auto` task that may be run best-of two (both calls billed) reserves both calls, and is run as one
  call when the budget pays for one only.
- A stream that breaks after its text began is billed for that text (an estimate), as its provider
  charged it, once.
- A whole answer its client stopped waiting for (a shorter wait than the model takes) is billed for its
  prompt (an estimate), which its provider charged, once; the key's spend is billing's sum.
- Billing names the key of every entry: the usage report breaks usage down by key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import yaml

from switchyard.common.events.tasks import TASK_TYPES
from tests.e2e.conftest import RunningStack, start_stack, stop_stack
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_gemini import FakeGemini
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.e2e
WORDS = 20_000  # what the writers write when nothing stops them: $0.20 of output
OUT = 0.01  # USD per 1K output tokens: 4,096 tokens cost $0.04096
BUDGET = 0.05
PROMPT = [{"role": "user", "content": "Write at length."}]


def _model(model_id: str, upstream: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "provider": model_id.split("/")[0],
        "upstream": upstream,
        "tier": "premium",
        "input_per_1k": 0.001,
        "output_per_1k": OUT,
        "context_window": 128_000,
    }


POLICY = {
    "version": "hard-budgets",
    "models": [
        _model("openai/writer", f"long-{WORDS}"),
        _model("gemini/writer", f"long-{WORDS}"),
        _model("anthropic/writer", f"long-{WORDS}"),
        _model("openai/breaker", "break"),
        _model("openai/sleeper", "slow-5"),
        _model("openai/racer-a", "long-3000"),
        _model("openai/racer-b", "long-3000"),
    ],
    "aliases": {"w-openai": "openai/writer", "w-gemini": "gemini/writer", "w-anthropic": "anthropic/writer"},
    "strategies": {
        # every task type run best-of two: both answers are billed
        "parallel": {
            "fan_out": 2,
            "urgency_above": 1.0,
            "best_of_types": [*TASK_TYPES],
        },
        "cascade": {"enabled": False},
    },
}


@pytest.fixture(scope="module")
def fakes() -> tuple[FakeOpenAI, FakeGemini, FakeAnthropic]:
    return FakeOpenAI(), FakeGemini(), FakeAnthropic()


@pytest.fixture(scope="module")
def budget_stack(
    fakes: tuple[FakeOpenAI, FakeGemini, FakeAnthropic], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    openai, gemini, anthropic = fakes
    with ExitStack() as servers:
        urls = [servers.enter_context(BackgroundServer(f.app)).url for f in fakes]
        base = tmp_path_factory.mktemp("budgets")
        (base / "policy.yaml").write_text(yaml.safe_dump(POLICY))
        env = {
            "OPENAI_API_KEY": openai.api_key,
            "OPENAI_BASE_URL": f"{urls[0]}/v1",
            "GEMINI_API_KEY": gemini.api_key,
            "GEMINI_BASE_URL": urls[1],
            "ANTHROPIC_API_KEY": anthropic.api_key,
            "ANTHROPIC_BASE_URL": urls[2],
            "SWITCHYARD_POLICY_PATH": str(base / "policy.yaml"),
        }
        running = start_stack(base / "var", base / "up.log", env=env)
        try:
            yield running
        finally:
            stop_stack(running)


def _admin(stack: RunningStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.api_key}"}


def _key(stack: RunningStack, name: str, budget: float = BUDGET, **policy: Any) -> tuple[str, str]:
    """A key of the development admin's with a lifetime budget of its own: (its id, its secret)."""
    body = {"name": name, "max_budget_usd": budget, **policy}
    made = httpx.post(f"{stack.base_url}/v1/admin/keys", json=body, headers=_admin(stack), timeout=30)
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["key"]


def _spent(stack: RunningStack, key_id: str) -> float:
    """The key's spend once settled: two reads 0.3 s apart that agree (near its limit a settlement's
    give-back is written after the response)."""
    url = f"{stack.base_url}/v1/admin/keys/{key_id}"
    last = None
    for _ in range(20):
        spent: float = httpx.get(url, headers=_admin(stack), timeout=30).json()["spend"]["spent_usd"]
        if spent == last:
            return spent
        last = spent
        time.sleep(0.3)
    raise AssertionError(f"the spend of {key_id} did not settle")


def _chat(stack: RunningStack, key: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        json={"messages": PROMPT, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )


def _sent(fake: FakeOpenAI | FakeGemini | FakeAnthropic, field: str) -> Any:
    """The output cap the provider was sent in its latest request (`field`: its name for it)."""
    body = fake.requests[-1].body
    return (body.get("generationConfig") or {}).get(field) if field == "maxOutputTokens" else body.get(field)


def test_an_answer_without_max_tokens_is_cut_at_what_the_budget_pays_for(
    budget_stack: RunningStack, fakes: tuple[FakeOpenAI, FakeGemini, FakeAnthropic]
) -> None:
    key_id, key = _key(budget_stack, "openai-chat")
    first = _chat(budget_stack, key, model="w-openai")
    assert first.status_code == 200, first.text
    spent = _spent(budget_stack, key_id)
    assert spent <= BUDGET, f"one answer spent ${spent} of a ${BUDGET} budget"
    assert _sent(fakes[0], "max_tokens") == 4096  # what the reservation paid for (the default)
    assert first.json()["choices"][0]["finish_reason"] == "length"
    assert first.json()["usage"]["completion_tokens"] == 4096

    second = _chat(budget_stack, key, model="w-openai")  # what is left pays for ~900 tokens
    assert second.status_code == 200, second.text
    cap = _sent(fakes[0], "max_tokens")
    assert 800 < cap < 1000 and second.json()["usage"]["completion_tokens"] == cap
    assert second.json()["choices"][0]["finish_reason"] == "length"
    third = _chat(budget_stack, key, model="w-openai")  # nothing worth an answer is left
    assert third.status_code == 429 and third.json()["error"]["code"] == "budget_exceeded"
    assert BUDGET - 0.0002 < _spent(budget_stack, key_id) <= BUDGET


def test_concurrent_requests_never_pass_the_budget_together(budget_stack: RunningStack) -> None:
    """Eight at once, none with max_tokens: each is admitted whole, capped at what is left, or refused,
    by compare-and-set, so together they spend no more than the budget."""
    key_id, key = _key(budget_stack, "concurrent")
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: _chat(budget_stack, key, model="w-openai"), range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) >= 2 and set(codes) <= {200, 429}, codes
    assert all(a.json()["choices"][0]["finish_reason"] == "length" for a in answers if a.status_code == 200)
    assert BUDGET - 0.0002 < _spent(budget_stack, key_id) <= BUDGET


def test_every_face_and_provider_is_sent_the_cap(
    budget_stack: RunningStack, fakes: tuple[FakeOpenAI, FakeGemini, FakeAnthropic]
) -> None:
    openai, gemini, anthropic = fakes
    key_id, key = _key(budget_stack, "gemini-face")
    answer = httpx.post(
        f"{budget_stack.base_url}/v1beta/models/w-gemini:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "Write at length."}]}]},
        headers={"x-goog-api-key": key},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert _spent(budget_stack, key_id) <= BUDGET
    assert _sent(gemini, "maxOutputTokens") == 4096
    assert answer.json()["candidates"][0]["finishReason"] == "MAX_TOKENS"

    key_id, key = _key(budget_stack, "responses-face")
    response = httpx.post(
        f"{budget_stack.base_url}/v1/responses",
        json={"model": "w-openai", "input": "Write at length."},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert _spent(budget_stack, key_id) <= BUDGET
    assert _sent(openai, "max_tokens") == 4096
    assert response.json()["status"] == "incomplete"
    assert response.json()["incomplete_details"] == {"reason": "max_output_tokens"}

    # The Messages API requires max_tokens: a client's own 8,000 ($0.08) is more than the budget pays for
    key_id, key = _key(budget_stack, "messages-face")
    message = httpx.post(
        f"{budget_stack.base_url}/v1/messages",
        json={"model": "w-anthropic", "max_tokens": 8000, "messages": PROMPT},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        timeout=120,
    )
    assert message.status_code == 200, message.text
    sent = _sent(anthropic, "max_tokens")
    assert 4900 < sent < 5000 and message.json()["stop_reason"] == "max_tokens"
    assert message.json()["usage"]["output_tokens"] == sent
    assert BUDGET - 0.0002 < _spent(budget_stack, key_id) <= BUDGET


def test_the_task_api_and_legacy_completions_are_capped_too(
    budget_stack: RunningStack, fakes: tuple[FakeOpenAI, FakeGemini, FakeAnthropic]
) -> None:
    key_id, key = _key(budget_stack, "task-api")
    auth = {"Authorization": f"Bearer {key}"}
    task = httpx.post(
        f"{budget_stack.base_url}/v1/tasks", json={"model": "w-openai", "messages": PROMPT}, headers=auth
    )
    assert task.status_code == 202, task.text
    deadline = time.monotonic() + 60
    while (state := httpx.get(f"{budget_stack.base_url}/v1/tasks/{task.json()['id']}", headers=auth).json())[
        "status"
    ] == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert state["status"] == "completed" and state["result"]["finish_reason"] == "length"
    assert state["result"]["usage"]["completion_tokens"] == 4096 and _sent(fakes[0], "max_tokens") == 4096
    assert _spent(budget_stack, key_id) <= BUDGET

    key_id, key = _key(budget_stack, "legacy")  # its own default is OpenAI's 16: ask for 8,000 ($0.08)
    legacy = httpx.post(
        f"{budget_stack.base_url}/v1/completions",
        json={"model": "w-openai", "prompt": "Write at length.", "max_tokens": 8000},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert legacy.status_code == 200, legacy.text
    assert legacy.json()["choices"][0]["finish_reason"] == "length"
    assert 4900 < _sent(fakes[0], "max_tokens") < 5000  # what the $0.05 pays for
    assert BUDGET - 0.0002 < _spent(budget_stack, key_id) <= BUDGET


def test_a_best_of_two_reserves_both_calls_or_runs_one(budget_stack: RunningStack) -> None:
    racers = ["auto", "openai/racer-a", "openai/racer-b"]
    key_id, key = _key(budget_stack, "race-small", models=racers)  # pays for one call, not two
    small = _chat(budget_stack, key, model="auto")
    assert small.status_code == 200, small.text
    spent = _spent(budget_stack, key_id)
    assert spent <= BUDGET, f"a best-of-two spent ${spent} of a ${BUDGET} budget"
    assert small.headers["x-switchyard-model"] in racers

    key_id, key = _key(budget_stack, "race-large", budget=0.2, models=racers)  # pays for two
    large = _chat(budget_stack, key, model="auto")
    assert large.status_code == 200, large.text
    spent = _spent(budget_stack, key_id)
    assert 0.06 <= spent <= 0.062  # both answers of 3,000 tokens (and their prompts), within $0.2
    usage = _usage(budget_stack, key_id, ["kind"], count=2)
    assert {r["kind"]: r["requests"] for r in usage} == {"call": 1, "task": 1}


def test_a_stream_broken_after_its_text_began_is_billed_for_it(budget_stack: RunningStack) -> None:
    key_id, key = _key(budget_stack, "broken-stream")
    with httpx.stream(
        "POST",
        f"{budget_stack.base_url}/v1/chat/completions",
        json={"model": "openai/breaker", "messages": PROMPT, "stream": True, "max_tokens": 100},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    ) as stream:
        body = "".join(stream.iter_text())
    assert '"content":"Hello! "' in body and "[DONE]" not in body
    assert _spent(budget_stack, key_id) > 0  # the prompt and the two words sent, estimated
    rows = _usage(budget_stack, key_id, ["kind"], count=1)
    assert [(r["kind"], r["requests"], r["estimated"]) for r in rows] == [("call", 1, 1)]
    assert _spent(budget_stack, key_id) == pytest.approx(float(rows[0]["cost_usd"]), abs=2e-6)


def test_a_whole_answer_cut_by_its_clients_wait_is_billed_for_its_prompt(budget_stack: RunningStack) -> None:
    key_id, key = _key(budget_stack, "cut-answer")
    cut = httpx.post(
        f"{budget_stack.base_url}/v1/chat/completions",
        json={"model": "openai/sleeper", "messages": PROMPT, "max_tokens": 100},
        headers={"Authorization": f"Bearer {key}", "x-switchyard-timeout": "1"},
        timeout=30,
    )
    assert cut.status_code == 502 and cut.json()["error"]["code"] == "provider_timeout", cut.text
    rows = _usage(budget_stack, key_id, ["kind"], count=1)
    assert [(r["kind"], r["requests"], r["estimated"]) for r in rows] == [("call", 1, 1)]
    assert rows[0]["prompt_tokens"] > 0 and rows[0]["completion_tokens"] == 0
    assert _spent(budget_stack, key_id) == pytest.approx(float(rows[0]["cost_usd"]), abs=2e-6)


def test_usage_is_broken_down_by_key(budget_stack: RunningStack) -> None:
    key_id, key = _key(budget_stack, "reconciled")
    assert _chat(budget_stack, key, model="w-openai", max_tokens=10).status_code == 200
    rows = _usage(budget_stack, key_id, ["key"], count=1)
    assert rows[0]["api_key_id"] == key_id and rows[0]["completion_tokens"] == 10
    assert float(rows[0]["cost_usd"]) <= _spent(budget_stack, key_id)  # the gateway rounds up to 1e-6
    out = budget_stack.cli("billing", "usage", "--tenant", "dev", "--group-by", "key", "--csv")
    assert out.returncode == 0, out.stderr
    assert any(line.startswith(f"{key_id},1,") for line in out.stdout.splitlines()), out.stdout


def _usage(stack: RunningStack, key_id: str, group_by: list[str], *, count: int) -> list[dict[str, Any]]:
    """The usage report's rows of one key, once billing has charged `count` entries of it."""
    deadline = time.monotonic() + 30
    while True:
        report = httpx.get(
            f"{stack.base_url}/v1/usage",
            params={"api_key_id": key_id, "group_by": ",".join(group_by)},
            headers=_admin(stack),
            timeout=30,
        )
        assert report.status_code == 200, report.text
        rows: list[dict[str, Any]] = report.json()["rows"]
        if sum(r["requests"] for r in rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)
