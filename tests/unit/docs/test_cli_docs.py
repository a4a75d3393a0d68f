"""The `switchyard` commands the docs show are the CLI's, with its options; each of its commands is shown."""

from __future__ import annotations

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
