"""Per-key policies over HTTP, on two gateway replicas sharing a real nats-server and SQLite: the admin API
sets and changes them (admin only, in the caller's organisation, recorded); a model outside a key's
allow-list is refused before admission and /v1/models shows only what the key may use; a key's requests
and tokens per minute and its budget are enforced like the user's and organisation's, across replicas."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.events import AdminActionRecorded
from tests.integration.gateway.harness import (
    PRICED_BODY,
    PRICED_POLICY,
    Answerer,
    Bases,
    Org,
    auth,
    gateway_stack,
    make_org,
    stored_events,
    wait_for_a_fresh_minute,
)

pytestmark = pytest.mark.integration

SMOL = "local/smollm2-135m-instruct"
OTHER = "local/other"
POLICY = (
    PRICED_POLICY
    + f"""  - id: {OTHER}
    provider: local
    upstream: other
    tier: local
    input_per_1k: 0.0
    output_per_1k: 0.5
    context_window: 8192
aliases:
  cheap: {SMOL}
"""
)
World = tuple[NatsServer, str, Bases]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("key-policies")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    with gateway_stack(tmp, count=2, env={"SWITCHYARD_POLICY_PATH": str(policy)}) as stack:
        yield stack


@pytest.fixture
async def answerer(world: World) -> AsyncIterator[Answerer]:
    me = await Answerer.start(world[0].url)
    yield me
    await me.close()


async def _key(c: httpx.AsyncClient, base: str, org: Org, **policy: Any) -> dict[str, Any]:
    made = await c.post(
        f"{base}/v1/admin/keys", json={"name": "team", **policy}, headers=auth(org.keys["admin"])
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def _chat(model: str = "auto", **extra: Any) -> dict[str, Any]:
    return {**PRICED_BODY, "model": model, **extra}


def _error(r: httpx.Response) -> tuple[int, str, str]:
    err = r.json()["error"]
    return r.status_code, err["type"], err["code"]


async def test_the_admin_api_sets_changes_and_shows_a_keys_policy(world: World) -> None:
    server, db_url, (one, two) = world
    org = await make_org(db_url, "policed", roles=("admin", "member"))
    other = await make_org(db_url, "elsewhere", roles=("admin",))
    admin = auth(org.keys["admin"])
    async with httpx.AsyncClient() as c:
        made = await _key(
            c, one, org, models=["cheap", "auto"], rpm_limit=10, max_budget_usd=1, budget_duration="1d"
        )
        assert {
            k: made[k] for k in ("models", "rpm_limit", "tpm_limit", "max_budget_usd", "budget_duration")
        } == {
            "models": ["cheap", "auto"],
            "rpm_limit": 10,
            "tpm_limit": None,
            "max_budget_usd": 1.0,
            "budget_duration": "1d",
        }
        for bad, param in (
            ({"models": []}, "models"),
            ({"models": ["two words"]}, "models"),
            ({"budget_duration": "7d"}, "budget_duration"),
            ({"rpm_limit": -1}, "rpm_limit"),
        ):
            refused = await c.post(f"{one}/v1/admin/keys", json={"name": "x", **bad}, headers=admin)
            assert refused.status_code == 400, (bad, refused.text)
            assert refused.json()["error"]["param"].startswith(param), refused.json()
        path = f"/v1/admin/keys/{made['id']}"
        member = await c.patch(f"{one}{path}", json={"rpm_limit": 1}, headers=auth(org.keys["member"]))
        assert _error(member)[:2] == (403, "permission_error")
        foreign = await c.patch(f"{one}{path}", json={"rpm_limit": 1}, headers=auth(other.keys["admin"]))
        assert _error(foreign) == (404, "invalid_request_error", "not_found")
        unknown = await c.patch(f"{one}{path}", json={"rpm": 1}, headers=admin)
        assert unknown.status_code == 400
        changed = await c.patch(f"{two}{path}", json={"models": None, "tpm_limit": 5000}, headers=admin)
        assert changed.status_code == 200, changed.text
        shown = (await c.get(f"{one}{path}", headers=admin)).json()
        bare = (await c.get(f"{one}/v1/admin/keys", headers=admin)).json()
    assert (shown["models"], shown["rpm_limit"], shown["tpm_limit"]) == (None, 10, 5000)
    assert shown["spend"]["spent_usd"] == 0 and shown["spend"]["max_budget_usd"] == 1.0
    assert shown["spend"]["remaining_usd"] == 1.0 and len(shown["spend"]["period"]) == 8
    assert all(k["models"] is None and k["rpm_limit"] is None for k in bare if k["id"] != made["id"])
    events, raw = await stored_events(server.url, subjects.ADMIN_ACTION, AdminActionRecorded)
    updated = [e for e in events if e.action == "key.updated" and e.tenant_id == org.id]
    assert [(e.target_id, e.changes, e.actor_user_id) for e in updated] == [
        (made["id"], {"models": None, "tpm_limit": 5000}, org.users["admin"])
    ]
    assert made["key"].encode() not in raw


async def test_a_model_name_no_policy_or_provider_knows_is_refused_for_a_keys_list(world: World) -> None:
    """`models: ["gtp-4o"]` (a typo) was stored: the key could then use none of what it meant to allow.
    A name neither `auto`, a policy model or alias, nor `<provider>/<model>` of a pass-through provider is
    400 `invalid_value` (param `models`) naming it and the names known, at creation and in a PATCH."""
    _, db_url, (one, two) = world
    org = await make_org(db_url, "typos", roles=("admin",))
    admin = auth(org.keys["admin"])
    async with httpx.AsyncClient() as c:
        made = await _key(c, one, org, models=["auto", "cheap", OTHER, "openai/gpt-6-luna", "gemini/x"])
        path = f"/v1/admin/keys/{made['id']}"
        for typo in ("gtp-4o", "local/smollm2", "openai/", "Cheap", "mistral/large"):
            for refused in (
                await c.post(
                    f"{one}/v1/admin/keys", json={"name": "t", "models": ["auto", typo]}, headers=admin
                ),
                await c.patch(f"{two}{path}", json={"models": [typo, "cheap"]}, headers=admin),
            ):
                assert _error(refused) == (400, "invalid_request_error", "invalid_value"), refused.text
                error = refused.json()["error"]
                assert error["param"] == "models" and repr(typo) in error["message"], error
                assert all(
                    known in error["message"] for known in ("auto", "cheap", SMOL, OTHER, "openai/")
                ), error
        keys = (await c.get(f"{one}/v1/admin/keys", headers=admin)).json()
    assert [k["name"] for k in keys if k["name"] == "t"] == []
    assert next(k["models"] for k in keys if k["id"] == made["id"]) == made["models"]


async def test_a_model_outside_the_allow_list_is_refused_before_admission(
    world: World, answerer: Answerer
) -> None:
    _, db_url, (one, two) = world
    org = await make_org(db_url, "narrow", roles=("admin",))
    async with httpx.AsyncClient(timeout=30) as c:
        cheap = (await _key(c, one, org, models=["cheap"]))["key"]
        routed = (await _key(c, one, org, models=["auto", OTHER]))["key"]
        listed = (await c.get(f"{two}/v1/models", headers=auth(cheap))).json()["data"]
        assert sorted(m["id"] for m in listed) == ["cheap", SMOL]
        everything = (await c.get(f"{two}/v1/models", headers=auth(org.keys["admin"]))).json()["data"]
        assert {"auto", "cheap", SMOL, OTHER} <= {m["id"] for m in everything}

        refusals = [
            await c.post(f"{one}/v1/chat/completions", json=_chat(OTHER), headers=auth(cheap)),
            await c.post(f"{two}/v1/chat/completions", json=_chat("auto"), headers=auth(cheap)),
            await c.get(f"{one}/v1/models/{OTHER}", headers=auth(cheap)),
        ]
        anthropic = await c.post(
            f"{one}/v1/messages",
            json={"model": OTHER, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
            headers=auth(cheap),
        )
        counts = [  # a count runs no model, but a key counts only with the models it may use
            await c.post(
                f"{one}/v1/messages/count_tokens",
                json={"model": OTHER, "messages": [{"role": "user", "content": "hi"}]},
                headers=auth(cheap),
            ),
            await c.post(
                f"{two}/v1/responses/input_tokens", json={"model": OTHER, "input": "hi"}, headers=auth(cheap)
            ),
        ]
        counted = await c.post(
            f"{two}/v1/responses/input_tokens", json={"model": "cheap", "input": "hi"}, headers=auth(cheap)
        )
        served = await c.post(f"{one}/v1/chat/completions", json=_chat("cheap"), headers=auth(cheap))
        claude_face = {"model": "cheap", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        as_alias = [  # a bare alias on the Anthropic face is the alias (litellm's `anthropic/cheap`)
            await c.post(f"{one}/v1/messages", json=claude_face, headers=auth(cheap)),
            await c.post(
                f"{two}/v1/messages/count_tokens",
                json={k: v for k, v in claude_face.items() if k != "max_tokens"},
                headers=auth(cheap),
            ),
        ]
        auto = await c.post(f"{two}/v1/chat/completions", json=_chat("auto"), headers=auth(routed))
        plain = await c.post(
            f"{two}/v1/chat/completions", json=_chat("auto"), headers=auth(org.keys["admin"])
        )
    for r in refusals:
        err = r.json()["error"]
        assert (r.status_code, err["type"], err["code"], err["param"]) == (
            403,
            "permission_error",
            "model_not_allowed",
            "model",
        )
        assert "is not allowed for this API key; its allowed models are: cheap" in err["message"]
        assert "x-ratelimit-limit-requests" not in r.headers  # refused before admission
    assert refusals[0].json()["error"]["message"].startswith(f"The model '{OTHER}' is not allowed")
    assert refusals[0].headers["x-request-id"]
    assert anthropic.status_code == 403 and anthropic.json()["error"]["type"] == "permission_error"
    assert [r.status_code for r in counts] == [403, 403] and counted.status_code == 200
    assert counts[1].json()["error"]["code"] == "model_not_allowed"
    assert [s.status_code for s in (served, auto, plain, *as_alias)] == [200] * 5, as_alias[0].text
    # Only the admitted requests became tasks; each carries its key's allow-list to the router.
    assert [t.allowed_models for t in answerer.seen] == [["cheap"], ["cheap"], ["auto", OTHER], None]
    assert answerer.seen[0].chat().model == SMOL  # the alias resolved, as for any key
    assert answerer.seen[1].chat().model == SMOL


async def _burst(bases: list[str], key: str, n: int, body: dict[str, Any]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as c:
        return list(
            await asyncio.gather(
                *(
                    c.post(f"{bases[i % 2]}/v1/chat/completions", json=body, headers=auth(key))
                    for i in range(n)
                )
            )
        )


async def _spend(base: str, key_id: str, admin: dict[str, str], spent_usd: float) -> dict[str, Any]:
    """The key's `spend` as the admin API shows it, once it is `spent_usd` (idle leases go back within
    250 ms)."""
    spend: dict[str, Any] = {}
    async with httpx.AsyncClient() as c:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            spend = (await c.get(f"{base}/v1/admin/keys/{key_id}", headers=admin)).json()["spend"]
            if spend["spent_usd"] == pytest.approx(spent_usd, abs=1e-6):
                break
            await asyncio.sleep(0.2)
    assert spend["spent_usd"] == pytest.approx(spent_usd, abs=1e-6), spend
    return spend


async def _two_held(answerer: Answerer, bases: list[str], key: str, n: int) -> list[httpx.Response]:
    """`n` requests at once while the pipeline holds its tasks: exactly two become tasks (checked after
    time for any overshoot to show), then all are answered."""
    answerer.hold = True
    firing = asyncio.create_task(_burst(bases, key, n, _chat()))
    deadline = time.monotonic() + 10
    while len(answerer.held) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert len(answerer.held) == 2
    await answerer.release()
    return await firing


async def test_a_keys_request_limit_holds_across_two_replicas(world: World, answerer: Answerer) -> None:
    _, db_url, bases = world
    org = await make_org(db_url, "ratey-key", roles=("admin",))
    async with httpx.AsyncClient() as c:
        made = await _key(c, bases[0], org, rpm_limit=6)
    await asyncio.to_thread(wait_for_a_fresh_minute, 8.0)
    responses = await _burst(bases, made["key"], 16, _chat())
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 6, 429: 10}, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert _error(refused) == (429, "requests", "rate_limit_exceeded")
    assert (
        "Rate limit reached for requests per min (key): limit 6, used 6" in refused.json()["error"]["message"]
    )
    assert refused.headers["x-ratelimit-limit-requests"] == "6"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(refused.headers["retry-after"]) >= 1
    ok = next(r for r in responses if r.status_code == 200)
    assert ok.headers["x-ratelimit-limit-requests"] == "6"  # the tightest limit is the key's
    # The same user's other key has its own (the user's) limits; a raised limit applies on both replicas.
    other = await _burst(bases, org.keys["admin"], 2, _chat())
    assert [r.status_code for r in other] == [200, 200]
    async with httpx.AsyncClient() as c:
        raised = await c.patch(
            f"{bases[0]}/v1/admin/keys/{made['id']}", json={"rpm_limit": 8}, headers=auth(org.keys["admin"])
        )
        assert raised.status_code == 200
    again = await _burst(bases, made["key"], 4, _chat())
    assert Counter(r.status_code for r in again) == {200: 2, 429: 2}


async def test_a_keys_token_limit_reserves_and_settles(world: World, answerer: Answerer) -> None:
    _, db_url, bases = world
    org = await make_org(db_url, "tokeny-key", roles=("admin",))
    async with httpx.AsyncClient() as c:
        small = (await _key(c, bases[0], org, tpm_limit=50))["key"]
        made = await _key(c, bases[0], org, tpm_limit=250)
    await asyncio.to_thread(wait_for_a_fresh_minute, 8.0)
    [too_big] = await _burst(bases, small, 1, _chat())
    assert _error(too_big) == (429, "tokens", "rate_limit_exceeded")
    assert "Request too large for tokens per min (key): limit 50" in too_big.json()["error"]["message"]
    assert too_big.headers["x-should-retry"] == "false"
    responses = await _two_held(answerer, bases, made["key"], 3)  # ~110 tokens reserved each
    assert Counter(r.status_code for r in responses) == {200: 2, 429: 1}
    refused = next(r for r in responses if r.status_code == 429)
    assert "Rate limit reached for tokens per min (key): limit 250" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-limit-tokens"] == "250"
    # Settled to what they used (11 tokens each): two more fit in the same minute.
    later = [(await _burst(bases[i:], made["key"], 1, _chat()))[0] for i in (0, 1)]
    assert [r.status_code for r in later] == [200, 200]


async def test_a_keys_budget_reserves_the_worst_case_and_settles_to_the_cost(
    world: World, answerer: Answerer
) -> None:
    """$0.12 a day; each request reserves $0.05 (100 tokens at $0.50/1K) and costs $0.001."""
    _, db_url, bases = world
    org = await make_org(db_url, "thrifty-key", roles=("admin",))
    admin = auth(org.keys["admin"])
    async with httpx.AsyncClient() as c:
        made = await _key(c, bases[0], org, max_budget_usd=0.12, budget_duration="1d")
    responses = await _two_held(answerer, bases, made["key"], 4)
    assert Counter(r.status_code for r in responses) == {200: 2, 429: 2}
    refused = next(r for r in responses if r.status_code == 429)
    assert _error(refused) == (429, "insufficient_quota", "budget_exceeded")
    assert "more than is left of this API key's daily budget" in refused.json()["error"]["message"]
    spend = await _spend(bases[1], made["id"], admin, 0.002)
    assert spend["remaining_usd"] == pytest.approx(0.118, abs=1e-6) and spend["max_budget_usd"] == 0.12
    assert [r.status_code for r in await _burst(bases, made["key"], 2, _chat())] == [200, 200]


async def test_a_rotated_key_keeps_what_its_budget_has_spent(world: World, answerer: Answerer) -> None:
    """$0.12 a day, two requests spent $0.002; rotated with a grace period, the new key has spent them
    too, and the old key, while it lasts, spends from the same budget: rotating starts no budget afresh."""
    _, db_url, bases = world
    org = await make_org(db_url, "rotating-key", roles=("admin",))
    admin = auth(org.keys["admin"])
    async with httpx.AsyncClient() as c:
        made = await _key(c, bases[0], org, max_budget_usd=0.12, budget_duration="1d")
        assert [r.status_code for r in await _burst(bases, made["key"], 2, _chat())] == [200, 200]
        rotated = await c.post(
            f"{bases[0]}/v1/admin/keys/{made['id']}/rotate", json={"grace_s": 600}, headers=admin
        )
        assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert (new["max_budget_usd"], new["budget_duration"]) == (0.12, "1d")
    await _spend(bases[1], new["id"], admin, 0.002)
    assert [r.status_code for r in await _burst(bases, made["key"], 1, _chat())] == [200]  # the old key
    assert [r.status_code for r in await _burst(bases, new["key"], 1, _chat())] == [200]
    for key_id in (made["id"], new["id"]):
        assert (await _spend(bases[0], key_id, admin, 0.004))["remaining_usd"] == pytest.approx(0.116)


async def test_a_budget_without_a_duration_is_the_keys_lifetime_budget(
    world: World, answerer: Answerer
) -> None:
    """$0.12 in all (no `budget_duration`: LiteLLM's lifetime budget), counted across replicas like the
    others, in a bucket whose entries never expire; refused past it without a Retry-After: it never
    renews."""
    server, db_url, bases = world
    org = await make_org(db_url, "lifelong-key", roles=("admin",))
    admin = auth(org.keys["admin"])
    async with httpx.AsyncClient() as c:
        made = await _key(c, bases[0], org, max_budget_usd=0.12)
    assert (made["max_budget_usd"], made["budget_duration"]) == (0.12, None)
    responses = await _two_held(answerer, bases, made["key"], 4)
    assert Counter(r.status_code for r in responses) == {200: 2, 429: 2}
    refused = next(r for r in responses if r.status_code == 429)
    assert _error(refused) == (429, "insufficient_quota", "budget_exceeded")
    assert "more than is left of this API key's lifetime budget" in refused.json()["error"]["message"]
    assert "retry-after" not in refused.headers and refused.headers["x-should-retry"] == "false"
    spend = await _spend(bases[1], made["id"], admin, 0.002)
    assert (spend["period"], spend["resets_at"], spend["max_budget_usd"]) == ("lifetime", None, 0.12)
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        bucket = await js.key_value(subjects.KV_SPEND_TOTAL)
        assert (await bucket.get(f"spend.key.{made['id']}.total")).value == b"2000"
        assert not (await js.stream_info(f"KV_{subjects.KV_SPEND_TOTAL}")).config.max_age
    finally:
        await nc.close()
