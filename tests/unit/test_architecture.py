"""The layout tells the architecture; these checks keep it telling the truth."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "classifier", "router", "executor", "billing", "audit")


def _python_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.py") if "migrations" not in p.parts]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_services_never_import_each_other(service: str) -> None:
    offenders = []
    for path in _python_files(ROOT / "services" / service):
        for module in _imports(path):
            parts = module.split(".")
            if len(parts) >= 2 and parts[0] == "switchyard" and parts[1] in SERVICES and parts[1] != service:
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_common_imports_no_service() -> None:
    for path in _python_files(ROOT / "libs" / "common"):
        for module in _imports(path):
            assert not any(module.startswith(f"switchyard.{s}") for s in SERVICES), f"{path} imports {module}"


def test_subjects_are_written_only_in_the_subject_table() -> None:
    literal = re.compile(
        r"""["']switchyard\.(task\.|result\.|chunk\.|provider\.|billing\.usage|dlq\.|ping\.)"""
    )
    offenders = []
    for folder in (ROOT / "services", ROOT / "libs"):
        for path in _python_files(folder):
            if path.name == "subjects.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if literal.search(line) and "EVENT_TYPE" not in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_bucket_names_are_written_only_in_the_subject_table() -> None:
    from switchyard.common import subjects

    buckets = [v for k, v in vars(subjects).items() if k.startswith(("KV_", "OBJ_")) and isinstance(v, str)]
    assert "switchyard-embeddings" in buckets
    literal = re.compile("|".join(rf"""["']{re.escape(name)}["']""" for name in buckets))
    offenders = []
    for folder in (ROOT / "services", ROOT / "libs"):
        for path in _python_files(folder):
            if path.name == "subjects.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if literal.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_the_committed_asyncapi_document_is_the_generated_one() -> None:
    from switchyard.cli.asyncapi_cmd import render

    committed = (ROOT / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")
    assert committed == render(), "docs/asyncapi.yaml is stale: run `make docs`"
