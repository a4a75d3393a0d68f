"""`switchyard bus permissions` prints an authorization block a real nats-server takes, with every user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from switchyard.cli.bus_permissions import GRANTS
from switchyard.cli.processes import nats_server_binary

pytestmark = pytest.mark.integration


def test_the_printed_block_is_a_valid_nats_configuration(tmp_path: Path) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "switchyard.cli.main", "bus", "permissions"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    config = tmp_path / "nats.conf"
    config.write_text(f"listen: 127.0.0.1:-1\njetstream {{ store_dir: {tmp_path / 'js'} }}\n{printed}")
    passwords = {f"{user.upper()}_NATS_PASSWORD": f"{user}-secret" for user in (*GRANTS, "operator")}
    checked = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **passwords},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert printed.count("{user:") == len(GRANTS) + 1
