"""The `switchyard` commands the docs show are the CLI's, with its options; each of its commands is shown."""

from __future__ import annotations

import contextlib
import io
import itertools
import re

import pytest

from tests.unit.docs import code_facts, usage

pytestmark = pytest.mark.unit


def _problems(words: list[str]) -> list[str]:
    """What in one documented command line the CLI does not have: an unknown (sub)command or option."""
    commands = code_facts.cli_commands()
    command = commands[()]
    problems = []
    for word in words:
        if word.startswith("-"):
            option = word.split("=", 1)[0]
            if re.fullmatch(r"--?[a-z][\w-]*", option) and option not in command.options:
                problems.append(f"option {option} of `switchyard {' '.join(command.path)}`")
            continue
        if not command.subcommands:
            continue  # an argument (a path, an id, a placeholder)
        choices = re.split(r"\\?\|", word)  # `promote\|rollback`: either
        unknown = [c for c in choices if c not in command.subcommands]
        if unknown:
            if re.fullmatch(r"[a-z][a-z0-9-]*", word):  # a word, not `SEQ...` or `<id>`
                problems.append(f"command `switchyard {' '.join((*command.path, word))}`")
            return problems
        if len(choices) > 1:
            return problems  # the rest of the line may belong to either
        command = commands[(*command.path, word)]
    return problems


def test_every_command_and_option_the_docs_show_exists() -> None:
    wrong = [
        f"{problem}: {where}" for words, where in usage.cli_invocations() for problem in _problems(words)
    ]
    assert not wrong, "commands the docs show that the CLI has not:\n" + "\n".join(wrong)


def test_every_command_of_the_cli_is_shown_in_the_docs() -> None:
    shown: set[tuple[str, ...]] = set()
    for words, _ in usage.cli_invocations():
        path: tuple[str, ...] = ()
        for word in words:
            if word.startswith("-"):
                continue
            for choice in re.split(r"\\?\|", word):
                shown.add((*path, choice))
            path = (*path, word)
    missing = sorted(" ".join(p) for p in code_facts.cli_commands() if p and p not in shown)
    assert not missing, "commands of the CLI no doc shows:\n" + "\n".join(f"switchyard {m}" for m in missing)


def test_the_checker_sees_a_wrong_command() -> None:
    assert _problems(["ledger", "verify", "--checkpoint", "F"]) == []
    assert _problems(["classifier", "promote\\|rollback", "--wait"]) == []
    assert _problems(["ledger", "verfy"]) == ["command `switchyard ledger verfy`"]
    assert _problems(["dlq", "list", "--bogus"]) == ["option --bogus of `switchyard dlq list`"]


def _parse_error(words: list[str]) -> str | None:
    """What the CLI's own argparse says of one documented command line, None when it takes it: a missing
    argument or required option, a value outside an option's choices or of the wrong type, a word too
    many. A file the line names that is not here is the reader's, not the line's fault, and a placeholder
    (`--wait S`, `SEQ...`) stands for a value of the right type. A line of choices (`promote|rollback`) is
    an overview: it runs when one of them does."""
    from switchyard.cli.main import build_parser

    errors = []
    for choice in itertools.product(*(re.split(r"\\?\|", w) for w in words)):
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
                build_parser().parse_args(list(choice))
        except SystemExit as exc:
            lines = said.getvalue().strip().splitlines()
            error = lines[-1] if lines else str(exc.code)
            placeholder = re.search(r"invalid \w+ value: '(?:[A-Z][A-Z_]*(?:\.\.\.)?|<[^>]*>)'$", error)
            if exc.code and not placeholder and not error.endswith(("no such file", "not a file")):
                errors.append(f"`switchyard {' '.join(choice)}`: {error}")
                continue
        return None
    return errors[0] if errors else None


def test_every_command_line_the_docs_show_runs_as_written() -> None:
    lines = usage.cli_command_lines()
    assert len(lines) > 30, "the command lines of the docs' code blocks were not found"
    wrong = [f"{error} ({where})" for words, where in lines if (error := _parse_error(words))]
    assert not wrong, "command lines the CLI refuses as written:\n" + "\n".join(wrong)


def test_the_parser_check_sees_a_line_that_would_not_run() -> None:
    assert _parse_error(["ledger", "verify", "--checkpoint", "cp.json"]) is None
    assert _parse_error(["classifier", "promote|rollback", "--wait", "S", "--artifact", "D"]) is None
    assert _parse_error(["classifier", "promote|rollback", "--wait", "soon"]) is not None
    assert _parse_error(["route", "--dry-run", "--jsonl", "nowhere.jsonl"]) is None  # the reader's file
    plan = _parse_error(["org", "create", "acme", "--admin-email", "a@b.c", "--plan", "gold"])
    assert "invalid choice: 'gold'" in (plan or "")
    assert "required" in (_parse_error(["org", "create", "acme"]) or "")
    assert "invalid int value" in (_parse_error(["dlq", "show", "twelve"]) or "")
