"""RFC 6962/9162 hashing and proofs against every transparency-dev/merkle vector in testdata/merkle."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from switchyard.audit import merkle

pytestmark = pytest.mark.unit

# A copy of transparency-dev/merkle's testdata/ (Apache-2.0, LICENSE beside it).
VECTORS = Path(__file__).with_name("merkle_vectors")
# The RFC 6962 test leaves (also transparency-dev/merkle's): the vectors' trees are built from them.
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
LEAF_HASHES = [merkle.hash_leaf(d) for d in LEAVES]


def _vectors(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert files, f"no {kind} vectors under {VECTORS}"
    return [pytest.param(json.loads(f.read_text()), id=str(f.relative_to(VECTORS / kind))) for f in files]


def _b(value: str) -> bytes:
    return base64.b64decode(value)


def _proof(vector: dict[str, Any]) -> list[bytes]:
    return [_b(p) for p in vector["proof"] or []]


@pytest.mark.parametrize("vector", _vectors("inclusion"))
def test_inclusion_vector(vector: dict[str, Any]) -> None:
    args = (vector["leafIdx"], vector["treeSize"], _b(vector["leafHash"]), _proof(vector), _b(vector["root"]))
    if vector["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("vector", _vectors("consistency"))
def test_consistency_vector(vector: dict[str, Any]) -> None:
    args = (vector["size1"], vector["size2"], _proof(vector), _b(vector["root1"]), _b(vector["root2"]))
    if vector["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def _happy(kind: str) -> list[Any]:
    return [v for v in _vectors(kind) if v.values[0]["desc"] == "happy path"]


@pytest.mark.parametrize("vector", _happy("inclusion"))
def test_generated_inclusion_proofs_are_the_vectors(vector: dict[str, Any]) -> None:
    leaves = LEAF_HASHES[: vector["treeSize"]]
    assert merkle.root(leaves) == _b(vector["root"])
    assert merkle.inclusion_proof(leaves, vector["leafIdx"]) == _proof(vector)


@pytest.mark.parametrize("vector", _happy("consistency"))
def test_generated_consistency_proofs_are_the_vectors(vector: dict[str, Any]) -> None:
    leaves = LEAF_HASHES[: vector["size2"]]
    assert merkle.root(LEAF_HASHES[: vector["size1"]]) == _b(vector["root1"])
    assert merkle.root(leaves) == _b(vector["root2"])
    assert merkle.consistency_proof(leaves, vector["size1"]) == _proof(vector)


def test_every_generated_proof_verifies_and_rejects_a_neighbour() -> None:
    leaves = [merkle.hash_leaf(i.to_bytes(4, "big")) for i in range(70)]
    for size in range(1, len(leaves) + 1):
        tree = leaves[:size]
        top = merkle.root(tree)
        for index in range(size):
            proof = merkle.inclusion_proof(tree, index)
            merkle.verify_inclusion(index, size, tree[index], proof, top)
            if size > 1:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_inclusion((index + 1) % size, size, tree[index], proof, top)
        for size1 in range(1, size + 1):
            proof = merkle.consistency_proof(tree, size1)
            merkle.verify_consistency(size1, size, proof, merkle.root(tree[:size1]), top)
            if size1 < size:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(
                        size1,
                        size,
                        proof,
                        merkle.root(tree[: size1 - 1]) if size1 > 1 else merkle.EMPTY_ROOT,
                        top,
                    )


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
