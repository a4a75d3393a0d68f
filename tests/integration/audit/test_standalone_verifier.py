"""scripts/verify_ledger_proof.py, the verifier an outside auditor runs without installing Switchyard: it
imports only the standard library and `cryptography`, agrees with the transparency-dev Merkle vectors,
accepts the documents the ledger serves and refuses forged ones, and a saved checkpoint catches a rewritten
history."""

from __future__ import annotations

import ast
import asyncio
import base64
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from switchyard.audit import checkpoints, proofs
from switchyard.audit.db import migrations
from switchyard.audit.service import append_entries
from switchyard.audit.signing import Signer, parse_private_key, signer_from
from switchyard.common.db import create_engine, sessionmaker
from tests.support.ledger import draft

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).parents[3] / "scripts" / "verify_ledger_proof.py"
VECTORS = Path(__file__).parents[2] / "unit" / "audit" / "merkle_vectors"
ORIGIN = "ledger.test/outside"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_ledger_proof", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_it_needs_no_switchyard_and_agrees_with_the_vectors() -> None:
    imported = set()
    for node in ast.walk(ast.parse(SCRIPT.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}
    script = _script()

    def raw(value: str | None) -> bytes:
        return base64.b64decode(value) if value else b""

    checked = 0
    for path in sorted(VECTORS.rglob("*.json")):
        v = orjson.loads(path.read_bytes())
        proof = [raw(p) for p in v["proof"] or []]
        try:
            if "leafIdx" in v:
                script.verify_inclusion(
                    v["leafIdx"], v["treeSize"], raw(v["leafHash"]), proof, raw(v["root"])
                )
            else:
                script.verify_consistency(v["size1"], v["size2"], raw(v["root1"]), raw(v["root2"]), proof)
            refused = False
        except script.Failed:
            refused = True
        assert refused == v["wantErr"], f"{path.relative_to(VECTORS)}: {v['desc']}"
        checked += 1
    assert checked > 150


async def _ledger(url: str, signer: Signer, *, rewrite: int = 0) -> Any:
    await migrations().upgrade(url)
    engine = create_engine(url)
    sessions = sessionmaker(engine)
    for first, last in ((1, 40), (41, 57)):
        drafts = [
            draft(n, actor="user:innocent") if n == rewrite else draft(n) for n in range(first, last + 1)
        ]
        await append_entries(sessions, drafts=drafts)
        await checkpoints.make_checkpoint(sessions, signer=signer)
    return engine, sessions


def _run(tmp_path: Path, key: str, docs: dict[str, Any], *saved: str) -> subprocess.CompletedProcess[str]:
    for name, doc in docs.items():
        (tmp_path / name).write_bytes(orjson.dumps(doc))
    command = [sys.executable, "-I", str(SCRIPT), "--verifier-key", key]
    command += [arg for name in saved for arg in ("--saved", str(tmp_path / name))]
    command += [str(tmp_path / name) for name in docs if name not in saved]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


async def test_served_documents_pass_and_forged_ones_fail(tmp_path: Path) -> None:
    signer = signer_from(parse_private_key(("66" * 32).encode()), origin=ORIGIN)
    engine, sessions = await _ledger(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", signer)
    try:
        docs = {
            "saved.json": await proofs.checkpoint(sessions, size=40),
            "latest.json": await proofs.checkpoint(sessions),
            "inclusion-5.json": await proofs.inclusion(sessions, seq=5),
            "inclusion-57.json": await proofs.inclusion(sessions, seq=57),
            "old-inclusion.json": await proofs.inclusion(sessions, seq=40, tree_size=40),
            "grew.json": await proofs.consistency(sessions, first=40),
        }
    finally:
        await engine.dispose()
    key = signer.key.text()
    ok = await asyncio.to_thread(_run, tmp_path, key, docs, "saved.json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "entry 57 (task.route, tenant acme) is in checkpoint 57" in ok.stdout
    assert "checkpoint 40 is a prefix of checkpoint 57" in ok.stdout

    inclusion = docs["inclusion-5.json"]
    forged = {
        "bad-proof.json": {
            **inclusion,
            "proof": [docs["inclusion-57.json"]["proof"][0], *inclusion["proof"][1:]],
        },
        "relabelled.json": {**inclusion, "tenant_id": "globex"},
        "other-entry.json": {**inclusion, "entry": docs["inclusion-57.json"]["entry"]},
        "resized.json": {**docs["grew.json"], "first": docs["latest.json"], "second": docs["saved.json"]},
    }
    bad = await asyncio.to_thread(_run, tmp_path, key, forged)
    assert bad.returncode == 1 and bad.stdout.count("FAILED") == 4, bad.stdout
    stranger = signer_from(parse_private_key(("67" * 32).encode()), origin=ORIGIN).key.text()
    assert (
        "no signature by"
        in (await asyncio.to_thread(_run, tmp_path, stranger, {"x.json": docs["latest.json"]})).stdout
    )

    # The same key over a history with entry 7 rewritten (what a re-signing attacker serves): every document
    # verifies on its own, and the checkpoint saved before shows the rewrite.
    engine, sessions = await _ledger(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", signer, rewrite=7)
    try:
        rewritten = {
            "saved.json": docs["saved.json"],
            "grew-b.json": await proofs.consistency(sessions, first=40),
        }
    finally:
        await engine.dispose()
    caught = await asyncio.to_thread(_run, tmp_path, key, rewritten, "saved.json")
    assert caught.returncode == 1, caught.stdout
    assert "checkpoint 40 differs from the one you saved: the log was rewritten" in caught.stdout
