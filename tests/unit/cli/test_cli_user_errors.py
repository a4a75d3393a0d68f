"""A file the user named that is not there or not readable, or a policy or classifier artifact that is
missing, is one line naming the command and the path, exit 2, never a traceback (before: each of these
ended in one)."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path
from types import SimpleNamespace

import pytest

from switchyard.cli import main as cli_main
from switchyard.cli.failures import user_problem
from switchyard.cli.main import main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["classifier", "eval", "--data", "{missing}"], "switchyard classifier: {missing}: No such file"),
        (["classifier", "train", "--data", "{missing}", "--out", "{tmp}/heads"], "{missing}: No such file"),
        (["router", "eval", "--data", "{tmp}"], "switchyard router: {tmp}: Is a directory"),
        (
            ["route", "--dry-run", "--jsonl", "{prompts}", "--policy", "{missing}"],
            "switchyard route: routing policy not found: {missing}",
        ),
        (
            ["classifier", "predict", "--jsonl", "{prompts}", "--artifact", "{tmp}"],
            "switchyard classifier: classifier artifact missing: {tmp}/heads.json not found",
        ),
        (
            ["asyncapi", "--output", "{missing}/asyncapi.yaml"],
            "switchyard asyncapi: {missing}/asyncapi.yaml:",
        ),
    ],
)
def test_a_file_that_is_not_there_is_one_line_and_exit_2(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": 1, "prompt": "hi"}\n')
    names = {"missing": str(tmp_path / "missing"), "tmp": str(tmp_path), "prompts": str(prompts)}
    assert main([part.format(**names) for part in argv]) == 2
    err = capsys.readouterr().err
    assert said.format(**names) in err
    assert len(err.strip().splitlines()) == 1, err


def test_an_error_of_no_file_of_the_users_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_args: argparse.Namespace) -> int:
        raise FileNotFoundError("no path: a bug, not the user's mistake")

    parsed = argparse.Namespace(command="asyncapi", func=broken)
    monkeypatch.setattr(cli_main, "build_parser", lambda: SimpleNamespace(parse_args=lambda _argv: parsed))
    with pytest.raises(FileNotFoundError):
        cli_main.main([])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_disk_that_is_full_is_one_line_naming_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC comes from the write, after the open: its OSError has no filename, and ended in a traceback."""
    assert main(["asyncapi", "--output", "/dev/full"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("switchyard asyncapi: No space left on device (ENOSPC)"), err
    assert len(err.strip().splitlines()) == 1, err


def test_a_name_the_system_refuses_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OSError of a file named, other than not-there or not-readable (a name too long), was a traceback."""
    named = tmp_path / ("a" * 300)
    assert main(["asyncapi", "--output", str(named)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"switchyard asyncapi: {named}: File name too long"), err
    assert len(err.strip().splitlines()) == 1, err


def test_a_network_error_says_what_the_system_said_but_never_a_urls_password() -> None:
    """What a socket says (EHOSTUNREACH: an address no route reaches, as asyncpg raises it for a database
    host on a network that is not there) with no filename: one line, exit 1, a URL's password redacted."""
    unreachable = OSError(errno.EHOSTUNREACH, "Connect call failed to postgresql://app:s3cret-pw@db:5432/x")
    said, code = user_problem(unreachable) or ("", 0)
    assert code == 1 and "Connect call failed" in said and "(EHOSTUNREACH)" in said, said
    assert "s3cret-pw" not in said and "postgresql://app:" in said, said
