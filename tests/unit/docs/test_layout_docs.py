"""The README's Layout names what is there (the CLI's commands, the services, the test and docs folders), and
the service READMEs name modules that exist."""

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


@pytest.mark.parametrize("service", sorted(p.parent.name for p in ROOT.glob("services/*/README.md")))
def test_every_module_a_service_readme_names_exists(service: str) -> None:
    """`retention.py`, `export/`, `common/tenants.py`: a file or folder of the service's package, of a
    library (libs/), or of the tests."""
    readme = ROOT / "services" / service / "README.md"
    where = [ROOT / "services" / service / "src", *ROOT.glob("libs/*/src"), ROOT / "tests"]
    there = {p.relative_to(base).as_posix() for base in where for p in base.rglob("*")}

    def exists(name: str) -> bool:
        if (ROOT / name).exists() or (readme.parent / name).exists():  # a path from the top or the service
            return True
        return any(p == name.rstrip("/") or p.endswith("/" + name.rstrip("/")) for p in there)

    lines = readme.read_text(encoding="utf-8").splitlines()
    missing = [
        f"{name} (line {n})"
        for n, line in enumerate(lines, 1)
        for name in re.findall(r"`(\w[\w/]*(?:\.py|/))`", line)  # `/work/shared/...`: not the repository's
        if not exists(name)
    ]
    assert not missing, f"what services/{service}/README.md names that is not there:\n" + "\n".join(missing)
