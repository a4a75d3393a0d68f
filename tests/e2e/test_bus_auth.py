"""The embedded run's bus (`make run`) lets no one in without a user and its password, and those
passwords appear in no log line, no event, no ledger entry, no process's arguments or environment."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import httpx
import nats
import pytest

from switchyard.cli import nats_users
from switchyard.cli.bus_permissions import INTEGRATOR
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def _passwords(stack: RunningStack) -> dict[str, str]:
    folder = stack.var_dir / nats_users.AUTH_DIR
    return {path.stem: path.read_text().strip() for path in folder.glob("*.password")}


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except FileNotFoundError:
            continue
        found += [int(child) for child in children]
        todo += [int(child) for child in children]
    return found


async def _refused(url: str, **kwargs: str) -> str:
    try:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=3, **kwargs)  # type: ignore[arg-type]
    except nats.errors.Error as exc:
        return str(exc)
    await nc.close()
    return "let in"


async def _bus_text(url: str) -> bytes:
    """Every message on every stream, and the KV buckets' values, as raw bytes."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    out = b""
    try:
        for info in await js.streams_info():
            if not info.state.messages:
                continue
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    msg = await js.get_msg(info.config.name, seq)
                except nats.js.errors.NotFoundError:
                    continue
                out += (msg.data or b"") + repr(msg.headers).encode()
    finally:
        await nc.close()
    return out


def test_the_bus_refuses_a_client_without_credentials(stack: RunningStack) -> None:
    assert "Authorization Violation" in asyncio.run(_refused(stack.bare_nats_url))
    said = asyncio.run(_refused(stack.bare_nats_url, user="executor", password="guessed"))
    assert "Authorization Violation" in said
    passwords = _passwords(stack)
    assert set(passwords) == {*nats_users.USERS, INTEGRATOR}  # another system's user too
    for user in passwords:
        mode = (stack.var_dir / nats_users.AUTH_DIR / f"{user}.password").stat().st_mode
        assert stat.S_IMODE(mode) == 0o600


def test_no_password_in_logs_events_ledger_or_processes(stack: RunningStack) -> None:
    answered = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {stack.api_key}"},
        json={"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi there."}]},
        timeout=120,
    )
    assert answered.status_code == 200, answered.text
    listed = stack.cli("dlq", "list")  # the CLI finds the operator's password by itself
    assert listed.returncode == 0, listed.stderr
    passwords = _passwords(stack)
    places: dict[str, bytes] = {
        "up.log": stack.output.read_bytes(),
        "bus": asyncio.run(_bus_text(stack.nats_url)),
    }
    for path in (stack.var_dir / "logs").glob("*.log"):
        places[path.name] = path.read_bytes()
    for path in stack.var_dir.glob("switchyard.db*"):  # the ledger, with its WAL
        places[path.name] = path.read_bytes()
    places["cli"] = (listed.stdout + listed.stderr).encode()
    processes = _descendants(stack.proc.pid)
    assert len(processes) >= 7  # nats-server and the six services
    for pid in processes:
        for part in ("cmdline", "environ"):
            try:
                places[f"{pid}/{part}"] = Path(f"/proc/{pid}/{part}").read_bytes()
            except FileNotFoundError:
                continue
    for user, password in passwords.items():
        leaks = [where for where, text in places.items() if password.encode() in text]
        assert not leaks, f"{user}'s NATS password found in {leaks}"
    assert any(b"SWITCHYARD_NATS_PASSWORD_FILE=" in text for text in places.values())
