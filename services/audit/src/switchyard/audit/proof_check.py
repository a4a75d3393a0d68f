"""Offline verification of checkpoint and proof documents (see `proofs.py`): no database, no network.

With a trusted verifier key, the checkpoint must be signed by it; without one, the key inside the document
is used and the result says so (pin the key you published with `--verifier-key`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from switchyard.audit import merkle
from switchyard.audit.checkpoints import CHECKPOINT_FORMAT
from switchyard.audit.note import CheckpointBody, NoteError, VerifierKey, open_note, parse_verifier_key
from switchyard.audit.proofs import CONSISTENCY_FORMAT, INCLUSION_FORMAT


class CheckFailed(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Verified:
    kind: str
    summary: str
    key: str
    pinned: bool


def _hex(value: Any, what: str) -> bytes:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError as exc:
        raise CheckFailed(f"{what} is not hex") from exc
    if len(raw) != merkle.HASH_SIZE:
        raise CheckFailed(f"{what} is {len(raw)} bytes, not {merkle.HASH_SIZE}")
    return raw


def check_checkpoint(doc: dict[str, Any], trusted: VerifierKey | None) -> tuple[CheckpointBody, VerifierKey]:
    """Verifies the signed note and that the document's fields say what the note says."""
    try:
        key = trusted or parse_verifier_key(str(doc["verifier_key"]))
        body = open_note(str(doc["note"]), key)
    except KeyError as exc:
        raise CheckFailed(f"the checkpoint lacks {exc}") from exc
    except NoteError as exc:
        raise CheckFailed(f"checkpoint: {exc}") from exc
    if doc.get("tree_size") != body.tree_size or _hex(doc.get("root_hash"), "root_hash") != body.root_hash:
        raise CheckFailed("the checkpoint's tree_size/root_hash differ from its signed note")
    return body, key


def _proof(doc: dict[str, Any]) -> list[bytes]:
    proof = doc.get("proof")
    if not isinstance(proof, list):
        raise CheckFailed("the document has no proof list")
    return [_hex(p, f"proof[{i}]") for i, p in enumerate(proof)]


def check_inclusion(doc: dict[str, Any], trusted: VerifierKey | None) -> str:
    body, _ = check_checkpoint(doc["checkpoint"], trusted)
    try:
        data = base64.b64decode(str(doc["entry"]), validate=True)
    except binascii.Error as exc:
        raise CheckFailed("the entry is not base64") from exc
    leaf = merkle.hash_leaf(data)
    if "leaf_hash" in doc and _hex(doc["leaf_hash"], "leaf_hash") != leaf:
        raise CheckFailed("leaf_hash is not SHA-256(0x00 || entry)")
    try:
        entry = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CheckFailed("the entry is not JSON") from exc
    seq = entry.get("seq") if isinstance(entry, dict) else None
    if not isinstance(seq, int) or seq != doc.get("seq") or doc.get("leaf_index") != seq - 1:
        raise CheckFailed("seq / leaf_index do not match the entry (leaf index = seq - 1)")
    if "tenant_id" in doc and doc["tenant_id"] != entry.get("tenant_id"):
        raise CheckFailed("tenant_id differs from the entry's own (the entry bytes are what is proved)")
    if doc.get("tree_size") != body.tree_size:
        raise CheckFailed("tree_size differs from the signed checkpoint's")
    try:
        merkle.verify_inclusion(seq - 1, body.tree_size, leaf, _proof(doc), body.root_hash)
    except merkle.ProofError as exc:
        raise CheckFailed(f"inclusion proof: {exc}") from exc
    what = f"{entry.get('action')}, tenant {entry.get('tenant_id')}"
    return f"entry {seq} ({what}) is in checkpoint {body.tree_size}"


def check_consistency(doc: dict[str, Any], trusted: VerifierKey | None) -> str:
    one, _ = check_checkpoint(doc["first"], trusted)
    two, _ = check_checkpoint(doc["second"], trusted)
    try:
        merkle.verify_consistency(one.tree_size, two.tree_size, _proof(doc), one.root_hash, two.root_hash)
    except merkle.ProofError as exc:
        raise CheckFailed(f"consistency proof: {exc}") from exc
    return f"checkpoint {one.tree_size} is a prefix of checkpoint {two.tree_size}"


def check_document(doc: Any, *, trusted: VerifierKey | None = None) -> Verified:
    if not isinstance(doc, dict):
        raise CheckFailed("not a JSON object")
    kind = doc.get("format")
    try:
        if kind == INCLUSION_FORMAT:
            summary = check_inclusion(doc, trusted)
            key = trusted or parse_verifier_key(doc["checkpoint"]["verifier_key"])
        elif kind == CONSISTENCY_FORMAT:
            summary = check_consistency(doc, trusted)
            key = trusted or parse_verifier_key(doc["first"]["verifier_key"])
            second = trusted or parse_verifier_key(doc["second"]["verifier_key"])
            if second != key:
                raise CheckFailed("the two checkpoints are signed by different keys")
        elif kind == CHECKPOINT_FORMAT:
            body, key = check_checkpoint(doc, trusted)
            summary = f"checkpoint {body.tree_size} of {body.origin}, root {body.root_hash.hex()}"
        else:
            raise CheckFailed(f"unknown document format {kind!r}")
    except (KeyError, TypeError) as exc:
        raise CheckFailed(f"malformed document: {exc!r}") from exc
    except NoteError as exc:
        raise CheckFailed(str(exc)) from exc
    return Verified(kind=str(kind), summary=summary, key=key.text(), pinned=trusted is not None)
