"""A rotation refuses a key whose model list names models the policy no longer has, through the admin API
and `switchyard keys rotate`, against a real gateway re-reading its policy file: the names, and how to go
on, in one 400; the old key untouched. Once the list is fixed (`keys update --models`), it rotates, the new
key with the same list. (The names are not dropped on the way: a rotation promises the same policy, a
list changed inside it would bypass `key.updated`'s record, and a list of only such names has no
narrower form: an empty list is no valid policy, and no list lets the key use every model.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from switchyard.cli.main import main
from tests.integration.gateway.harness import PRICED_POLICY, Org, auth, make_org, priced_stack

pytestmark = pytest.mark.integration

RETIRED = "local/retired-model"
WITH_RETIRED = (
    PRICED_POLICY.replace('version: "test-priced"', 'version: "with-retired"')
    + f"""  - id: {RETIRED}
    provider: local
    upstream: smollm2-135m-instruct
    tier: local
    input_per_1k: 0.0
    output_per_1k: 0.5
    context_window: 8192
"""
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Org]]:
    tmp = tmp_path_factory.mktemp("rotation-models")
    with priced_stack(tmp, count=1, env={"SWITCHYARD_POLICY_CHECK_S": "0.2"}) as (_, db_url, (base,)):
        acme = asyncio.run(make_org(db_url, "acme", roles=("admin",)))
        yield base, tmp / "policy.yaml", acme


def _serves(base: str, key: str, model: str) -> bool:
    listed = httpx.get(f"{base}/v1/models", headers=auth(key)).json()["data"]
    return any(m["id"] == model for m in listed)


def _policy(base: str, key: str, path: Path, text: str, *, serves: bool) -> None:
    path.write_text(text)
    deadline = time.monotonic() + 15
    while _serves(base, key, RETIRED) != serves:
        assert time.monotonic() < deadline, "the gateway did not re-read its policy"
        time.sleep(0.2)


def test_a_rotation_refuses_models_the_policy_no_longer_has(
    world: tuple[str, Path, Org], capsys: pytest.CaptureFixture[str]
) -> None:
    base, policy, acme = world
    admin = acme.keys["admin"]
    _policy(base, admin, policy, WITH_RETIRED, serves=True)
    made = httpx.post(
        f"{base}/v1/admin/keys",
        headers=auth(admin),
        json={"name": "pinned", "models": ["auto", RETIRED]},
    )
    assert made.status_code == 201, made.text
    key_id, key = made.json()["id"], made.json()["key"]
    _policy(base, admin, policy, PRICED_POLICY, serves=False)

    refused = httpx.post(f"{base}/v1/admin/keys/{key_id}/rotate", headers=auth(admin), json={})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_value" and error["param"] == "models", error
    assert repr(RETIRED) in error["message"] and "keys update" in error["message"], error
    old = httpx.get(f"{base}/v1/admin/keys/{key_id}", headers=auth(admin)).json()
    assert old["rotated_to"] is None and old["revoked_at"] is None and old["models"] == ["auto", RETIRED]
    assert httpx.get(f"{base}/v1/models", headers=auth(key)).status_code == 200

    cli = ["keys", "--url", base, "--api-key", admin]
    assert main([*cli, "rotate", key_id]) == 2
    out, err = capsys.readouterr()
    said = err.splitlines()[-1]  # after --api-key's warning
    assert out == "" and said.startswith("switchyard keys: ") and repr(RETIRED) in said, said

    assert main([*cli, "update", key_id, "--models", "auto"]) == 0
    capsys.readouterr()
    assert main([*cli, "rotate", key_id]) == 0
    new_key = capsys.readouterr().out.strip()
    assert new_key.startswith("sy_")
    mine = httpx.get(f"{base}/v1/admin/keys", headers=auth(admin)).json()
    successor = next(k for k in mine if k["name"] == "pinned" and k["id"] != key_id)
    assert successor["models"] == ["auto"]
    assert httpx.get(f"{base}/v1/models", headers=auth(new_key)).status_code == 200
