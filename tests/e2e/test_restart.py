"""Ctrl-C stops everything cleanly, and the next run keeps the data of the last."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from switchyard.cli.processes import port_open
from tests.e2e.conftest import start_stack, stop_stack

pytestmark = pytest.mark.e2e


def _ask(base_url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi!"}]},
        timeout=120,
    )


def test_ctrl_c_stops_everything_and_data_survives_a_restart(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first = start_stack(var, tmp_path / "first.log")
    key = first.api_key
    assert _ask(first.base_url, key).status_code == 200
    assert stop_stack(first) == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert "stopped." in (tmp_path / "first.log").read_text()
    assert not port_open(first.http_port) and not port_open(first.nats_port), "nothing is left listening"

    second = start_stack(var, tmp_path / "second.log", http_port=first.http_port, nats_port=first.nats_port)
    try:
        assert second.api_key == key, "the development key is kept"
        assert "(created now)" not in (tmp_path / "second.log").read_text()
        assert _ask(second.base_url, key).status_code == 200
        verify = second.cli("ledger", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        assert stop_stack(second) == 0
