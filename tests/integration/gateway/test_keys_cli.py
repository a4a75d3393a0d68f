"""`switchyard keys list|create|revoke` against a real gateway: the CLI goes through the admin API, so a
key it creates works, a key it revokes stops working, and it sees only its own organisation's keys."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from switchyard.cli.keys_cmd import duration_s
from switchyard.cli.main import main
from tests.integration.gateway.harness import Org, auth, gateway_stack, make_org

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Org, Org]]:
    tmp = tmp_path_factory.mktemp("keys-cli")
    with gateway_stack(tmp) as (_, db_url, (base,)):
        acme = asyncio.run(make_org(db_url, "acme", roles=("admin", "member")))
        globex = asyncio.run(make_org(db_url, "globex", roles=("admin",)))
        yield base, acme, globex


def test_create_list_revoke(world: tuple[str, Org, Org], capsys: pytest.CaptureFixture[str]) -> None:
    base, acme, globex = world
    cli = ["keys", "--url", base, "--api-key", acme.keys["admin"]]
    member = acme.users["member"]
    assert (
        main(
            [*cli, "create", "--name", "ci", "--user", member, "--scopes", "inference", "--expires-in", "2h"]
        )
        == 0
    )
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("sy_") and "shown only this once" in err
    assert httpx.get(f"{base}/v1/models", headers=auth(key)).status_code == 200

    assert main([*cli, "list", "--user", member]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["id", "prefix", "name"]
    row = next(line for line in table if " ci " in line)
    key_id = row.split()[0]
    assert key.split("_")[1] in row and key not in "\n".join(table)

    # Another organisation's admin neither sees nor revokes it.
    other = ["keys", "--url", base, "--api-key", globex.keys["admin"]]
    assert main([*other, "list"]) == 0
    assert key_id not in capsys.readouterr().out
    assert main([*other, "revoke", key_id]) == 1
    said = capsys.readouterr().err.splitlines()[-1]  # after --api-key's warning
    assert said.startswith("switchyard keys: ") and "404" in said and "not_found" in said

    assert main([*cli, "revoke", key_id]) == 0
    assert f"revoked {key_id}" in capsys.readouterr().out
    assert httpx.get(f"{base}/v1/models", headers=auth(key)).status_code == 401


def test_listing_another_organisations_users_keys_is_not_found_as_creating_one(
    world: tuple[str, Org, Org], capsys: pytest.CaptureFixture[str]
) -> None:
    base, acme, globex = world
    cli = ["keys", "--url", base, "--api-key", acme.keys["admin"]]
    theirs = globex.users["admin"]
    for action in (["list", "--user", theirs], ["create", "--name", "x", "--user", theirs]):
        assert main([*cli, *action]) == 1
        got = capsys.readouterr()
        said = got.err.splitlines()[-1]  # one line (after --api-key's warning) says it all
        assert (
            said.startswith("switchyard keys: ") and "failed with 404: not_found" in said and theirs in said
        )
        assert got.out == ""  # no empty table


def test_rotate_prints_the_new_key_once_and_the_old_one_lasts_its_grace(
    world: tuple[str, Org, Org], capsys: pytest.CaptureFixture[str]
) -> None:
    base, acme, _ = world
    cli = ["keys", "--url", base, "--api-key", acme.keys["admin"]]
    assert main([*cli, "create", "--name", "rotating"]) == 0
    old_key = capsys.readouterr().out.strip()
    old_id = httpx.get(f"{base}/v1/admin/keys", headers=auth(old_key)).json()[-1]["id"]

    assert main([*cli, "rotate", old_id, "--grace-s", "3600"]) == 0
    out, err = capsys.readouterr()
    new_key = out.strip()
    assert new_key.startswith("sy_") and new_key != old_key and "shown only this once" in err
    new_id = next(line for line in err.splitlines() if line.startswith("id ")).split()[1].rstrip(",")
    assert new_id != old_id and httpx.get(f"{base}/v1/models", headers=auth(new_key)).status_code == 200
    assert httpx.get(f"{base}/v1/models", headers=auth(old_key)).status_code == 200  # its grace: 1 h

    assert main([*cli, "rotate", new_id]) == 0  # no grace: the one rotated is revoked now
    newest = capsys.readouterr().out.strip()
    assert httpx.get(f"{base}/v1/models", headers=auth(new_key)).status_code == 401
    assert httpx.get(f"{base}/v1/models", headers=auth(newest)).status_code == 200
    assert main([*cli, "rotate", old_id]) == 2  # the old one is in its grace: rotate its successor
    said = capsys.readouterr().err.splitlines()[-1]  # after --api-key's warning
    assert said.startswith("switchyard keys: ") and "400" in said and new_id in said, said


def test_a_model_name_the_gateway_does_not_know_is_refused(
    world: tuple[str, Org, Org], capsys: pytest.CaptureFixture[str]
) -> None:
    """`keys create --models gtp-4o` made a key that could use no model it meant to; the admin API's 400
    (as any 400: the command's input) is one line naming the name and those known, exit 2."""
    base, acme, _ = world
    cli = ["keys", "--url", base, "--api-key", acme.keys["admin"]]
    assert main([*cli, "create", "--name", "typo", "--models", "auto,gtp-4o"]) == 2
    said = capsys.readouterr().err.splitlines()[-1]  # after --api-key's warning
    assert said.startswith("switchyard keys: ") and "'gtp-4o'" in said, said
    assert "auto" in said and "openai/" in said, said
    assert main([*cli, "list"]) == 0
    assert " typo " not in capsys.readouterr().out


def test_without_url_it_calls_the_gateway_on_switchyard_http_port(
    world: tuple[str, Org, Org], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base, acme, _ = world
    monkeypatch.delenv("SWITCHYARD_GATEWAY_URL", raising=False)
    monkeypatch.setenv("SWITCHYARD_HTTP_PORT", base.rsplit(":", 1)[1])  # as `make run` was started
    monkeypatch.setenv("SWITCHYARD_API_KEY", acme.keys["admin"])
    assert main(["keys", "list", "--json"]) == 0
    assert '"prefix"' in capsys.readouterr().out


def test_durations() -> None:
    assert [duration_s(d) for d in ("3600", "90m", "12h", "30d", "45s")] == [3600, 5400, 43200, 2592000, 45]
    with pytest.raises(ValueError):
        duration_s("soon")


def test_the_key_comes_from_a_file_or_the_environment_not_only_the_command_line(
    world: tuple[str, Org, Org],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`--api-key` shows the key to every user of the machine (`ps`, /proc/<pid>/cmdline): the key is read
    from SWITCHYARD_API_KEY, or a file (--api-key-file, SWITCHYARD_API_KEY_FILE), and --help says so."""
    base, acme, _ = world
    for name in ("SWITCHYARD_API_KEY", "SWITCHYARD_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SWITCHYARD_VAR_DIR", str(tmp_path / "no-var"))  # no dev-api-key to fall back on
    key_file = tmp_path / "admin-key"
    key_file.write_text(acme.keys["admin"] + "\n")
    key_file.chmod(0o600)
    assert main(["keys", "--url", base, "--api-key-file", str(key_file), "list", "--json"]) == 0
    assert '"prefix"' in capsys.readouterr().out
    monkeypatch.setenv("SWITCHYARD_API_KEY_FILE", str(key_file))
    assert main(["keys", "--url", base, "list", "--json"]) == 0
    assert '"prefix"' in capsys.readouterr().out
    monkeypatch.delenv("SWITCHYARD_API_KEY_FILE")
    assert main(["keys", "--url", base, "--api-key-file", str(tmp_path / "nowhere"), "list"]) == 1
    missing = capsys.readouterr().err
    assert "nowhere" in missing and acme.keys["admin"] not in missing
    # The flag still works, with a warning that names the safer ways.
    assert main(["keys", "--url", base, "--api-key", acme.keys["admin"], "list", "--json"]) == 0
    warned = capsys.readouterr().err
    assert "ps" in warned and "SWITCHYARD_API_KEY" in warned and "--api-key-file" in warned
    for command in (["keys"], ["org"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert "--api-key-file" in shown and "SWITCHYARD_API_KEY_FILE" in shown and "ps" in shown


def test_the_gateway_and_the_key_go_before_or_after_the_action(
    world: tuple[str, Org, Org], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The README writes `switchyard keys list|create|...` "(`--url`, ...)": `keys list --url U` was refused
    ("unrecognized arguments: --url U"), only `keys --url U list` worked. Both do, for `org` too."""
    base, acme, _ = world
    key_file = tmp_path / "admin-key"
    key_file.write_text(acme.keys["admin"] + "\n")
    assert main(["keys", "list", "--url", base, "--api-key-file", str(key_file), "--json"]) == 0
    assert '"prefix"' in capsys.readouterr().out
    # the platform operator's command: acme's admin is not one
    assert main(["org", "plan", acme.id, "pro", "--url", base, "--api-key-file", str(key_file)]) == 1
    said = capsys.readouterr().err
    assert said.startswith("switchyard org: ") and "403" in said
