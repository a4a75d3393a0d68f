"""`switchyard classifier retrain --from-ledger` refuses what it cannot decide on in one line, before it
reads the ledger: a holdout fraction outside (0, 1), and current heads that are missing or corrupt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from switchyard.classifier import artifact
from switchyard.cli.main import main

pytestmark = pytest.mark.unit
# the ledger is never opened: both are refused before
RETRAIN = [
    "classifier",
    "retrain",
    "--from-ledger",
    "--dry-run",
    "--ledger-db",
    "sqlite+aiosqlite:////nonexistent/l.db",
]


@pytest.mark.parametrize("holdout", ["0", "1", "1.5", "-0.2", "x"])
def test_a_holdout_outside_zero_to_one_is_refused(holdout: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*RETRAIN, "--holdout", holdout])
    assert exited.value.code == 2
    assert "--holdout: a fraction between 0 and 1 (exclusive)" in capsys.readouterr().err


def test_corrupt_current_heads_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "heads"
    shutil.copytree(artifact.default_dir(), bad)
    (bad / "heads.npz").write_bytes((bad / "heads.npz").read_bytes()[:1000])
    code = main([*RETRAIN, "--artifact", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("retrain: classifier artifact ") and "is corrupt" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
