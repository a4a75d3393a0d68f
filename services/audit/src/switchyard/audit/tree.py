"""The Merkle tree kept as its perfect subtrees, so roots and proofs need O(log n) stored hashes. Pure.

A node `(level, index)` is the root of the perfect subtree over leaves `index * 2**level` up to
`(index + 1) * 2**level` (exclusive). Every such node, once its leaves exist, never changes, so they are
stored once (table `merkle_nodes`) and cached freely.

Any subtree of the RFC 6962 tree, `MTH(D[lo:hi])`, is the right fold of at most log2(n) perfect nodes: its
left child is always perfect, and its right child is again such a subtree. The plans below say which nodes
each proof element folds; `merkle.py` holds the reference (leaf list) algorithms they must agree with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from switchyard.audit.merkle import EMPTY_ROOT, hash_children

Node = tuple[int, int]  # (level, index)
Plan = list[list[Node]]  # one fold of perfect nodes per proof element


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_nodes(lo: int, hi: int) -> list[Node]:
    """The perfect nodes whose right fold is MTH(D[lo:hi]), left to right ([lo, hi) an RFC 6962 subtree)."""
    nodes: list[Node] = []
    while hi - lo > 0:
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            level = n.bit_length() - 1
            nodes.append((level, lo >> level))
            break
        k = _split(n)
        level = k.bit_length() - 1
        nodes.append((level, lo >> level))
        lo += k
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Right fold: H(h0, H(h1, ... H(h[n-2], h[n-1])))."""
    if not hashes:
        return EMPTY_ROOT
    node = hashes[-1]
    for left in reversed(hashes[:-1]):
        node = hash_children(left, node)
    return node


def frontier(size: int) -> list[Node]:
    """The perfect nodes of the tree of `size` leaves (one per set bit of `size`), left to right."""
    return subtree_nodes(0, size)


def inclusion_plan(index: int, size: int) -> Plan:
    """PATH(index, D[size]) as folds of perfect nodes, in proof order (bottom up)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    plan: Plan = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            plan.append(subtree_nodes(lo + k, hi))
            hi = lo + k
        else:
            plan.append(subtree_nodes(lo, lo + k))
            lo, m = lo + k, m - k
    plan.reverse()
    return plan


def consistency_plan(size1: int, size2: int) -> Plan:
    """PROOF(size1, D[size2]) as folds of perfect nodes, in proof order."""
    if not 0 < size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to size {size2}")
    plan: Plan = []
    lo, hi, m, whole = 0, size2, size1, True
    while True:
        n = hi - lo
        if m == n:
            if not whole:
                plan.append(subtree_nodes(lo, hi))
            break
        k = _split(n)
        if m <= k:
            plan.append(subtree_nodes(lo + k, hi))
            hi = lo + k
        else:
            plan.append(subtree_nodes(lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    plan.reverse()
    return plan


def needed(*plans: Plan) -> set[Node]:
    return {node for plan in plans for nodes in plan for node in nodes}


def assemble(plan: Plan, hashes: Mapping[Node, bytes]) -> list[bytes]:
    """The proof: each element's nodes looked up in `hashes` and folded."""
    return [fold([hashes[node] for node in nodes]) for nodes in plan]


def root_of(size: int, hashes: Mapping[Node, bytes]) -> bytes:
    return fold([hashes[node] for node in frontier(size)]) if size else EMPTY_ROOT


def extend(size: int, edge: Mapping[Node, bytes], leaves: Iterable[bytes]) -> list[tuple[int, int, bytes]]:
    """Appends leaf hashes to a tree of `size` leaves whose frontier hashes are `edge`.

    Returns every node the new leaves complete, leaves included, as (level, index, hash).
    """
    stack: list[tuple[int, int, bytes]] = [(lv, ix, edge[(lv, ix)]) for lv, ix in frontier(size)]
    made: list[tuple[int, int, bytes]] = []
    index = size
    for leaf in leaves:
        level, ix, node = 0, index, leaf
        made.append((0, ix, node))
        while stack and stack[-1][0] == level:
            _, left_ix, left = stack.pop()
            level, ix, node = level + 1, left_ix >> 1, hash_children(left, node)
            made.append((level, ix, node))
        stack.append((level, ix, node))
        index += 1
    return made
