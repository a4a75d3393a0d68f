"""The stored-subtree tree gives the same roots and proofs as the reference leaf-list algorithms."""

from __future__ import annotations

import hashlib

import pytest

from switchyard.audit import merkle, tree

pytestmark = pytest.mark.unit


def _leaves(n: int) -> list[bytes]:
    return [merkle.hash_leaf(hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


def _grown(leaves: list[bytes], steps: list[int]) -> dict[tree.Node, bytes]:
    """Builds the node store by appending the leaves in batches of the given sizes."""
    store: dict[tree.Node, bytes] = {}
    size = 0
    for step in steps:
        edge = {node: store[node] for node in tree.frontier(size)}
        for level, index, h in tree.extend(size, edge, leaves[size : size + step]):
            assert (level, index) not in store, "a perfect node is written once"
            store[(level, index)] = h
        size += step
    assert size == len(leaves)
    return store


SIZES = [*range(1, 40), 63, 64, 65, 127, 128, 129, 1000]


@pytest.mark.parametrize("size", SIZES)
def test_roots_and_proofs_match_the_reference(size: int) -> None:
    leaves = _leaves(size)
    store = _grown(leaves, [1] * min(size, 7) + ([size - 7] if size > 7 else []))
    assert len(store) == sum(size >> level for level in range(size.bit_length()))
    sample = range(1, size + 1) if size < 130 else range(1, size + 1, 37)
    for n in sample:
        assert tree.root_of(n, store) == merkle.root(leaves[:n])
    for n in {1, size // 2 or 1, size}:
        for i in (s - 1 for s in sample if s <= n):
            want = merkle.inclusion_proof(leaves[:n], i)
            assert tree.assemble(tree.inclusion_plan(i, n), store) == want
        for m in (m for m in sample if m <= n):
            want = merkle.consistency_proof(leaves[:n], m)
            got = tree.assemble(tree.consistency_plan(m, n), store)
            assert got == want
            merkle.verify_consistency(m, n, got, merkle.root(leaves[:m]), merkle.root(leaves[:n]))


def test_a_proof_needs_few_nodes() -> None:
    size = 1_000_003
    plan = tree.inclusion_plan(777_777, size)
    assert len(plan) <= 21 and len(tree.needed(plan)) <= 2 * 21
    assert len(tree.frontier(size)) == bin(size).count("1")


def test_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        tree.inclusion_plan(5, 5)
    with pytest.raises(ValueError):
        tree.consistency_plan(0, 5)
    with pytest.raises(ValueError):
        tree.consistency_plan(6, 5)
