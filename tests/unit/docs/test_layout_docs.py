"""The README's Layout names what is there: the CLI's commands, the services, the test and docs folders."""

from __future__ import annotations

import re

import pytest

from tests.unit.docs import code_facts, sources

pytestmark = pytest.mark.unit
ROOT = sources.ROOT


def _listed(folder: str) -> set[str]:
    """The words of a Layout entry: `(up, db, ...)` -> {"up", "db", ...}; `unit/` -> "unit"."""
    return set(re.findall(r"[\w.\-]+", sources.layout()[folder].replace("/", " ")))


def test_the_layout_lists_every_command_of_the_cli() -> None:
    commands = code_facts.cli_commands()[()].subcommands
    listed = re.search(r"command \(([^)]*)\)", sources.layout()["libs/cli/"])
    named = set(listed.group(1).split(", ")) if listed else set()
    assert named == commands, f"missing {sorted(commands - named)}, not commands {sorted(named - commands)}"


def test_the_layout_lists_every_service_test_and_docs_folder() -> None:
    services = {p.parent.name for p in ROOT.glob("services/*/pyproject.toml")}
    test_folders = {p.parent.name for p in ROOT.glob("tests/*/__init__.py")} - {"support"}  # helpers
    docs = {p.name for p in (ROOT / "docs").iterdir()}
    assert not services - _listed("services/<name>/"), "a service the Layout does not name"
    assert not test_folders - _listed("tests/"), "a test folder the Layout does not name"
    assert not docs - _listed("docs/"), "a document the Layout does not name"
