#!/usr/bin/env python3
"""Checks Switchyard ledger documents with no Switchyard install: Python 3.10+ and `cryptography` only.

    python3 verify_ledger_proof.py --verifier-key KEY [--saved CHECKPOINT ...] DOCUMENT ...

KEY is the verifier key the operator published (`<name>+<key id hex>+<base64(0x01 || Ed25519 key)>`), never
the one inside a document. A DOCUMENT is what `GET /v1/ledger/checkpoint`, `/v1/ledger/proof/inclusion` or
`/v1/ledger/proof/consistency` (or `switchyard ledger checkpoint|proof`) returned. Each is checked from the
public specs alone (services/audit/README.md, "Proofs"):

- the checkpoint: a C2SP signed note (https://c2sp.org/signed-note) whose Ed25519 signature by KEY verifies
  over the note text, a C2SP tlog-checkpoint body (https://c2sp.org/tlog-checkpoint), and the document's
  `tree_size`/`root_hash` equal to the signed ones;
- an inclusion proof: leaf = SHA-256(0x00 || entry bytes), RFC 9162 section 2.1.3.2 up to the signed root,
  leaf index = seq - 1, and the document's labels equal to the entry's own;
- a consistency proof: RFC 9162 section 2.1.4.2 between the two signed roots.

A checkpoint saved earlier (`--saved`, a checkpoint document) pins history: any checkpoint of the same size
in a document must have its root, else the log was rewritten. Ask for a consistency proof from a saved
checkpoint's size to the latest to check that the log only grew since. Prints one line per document; exit 1
when any fails.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ED25519 = 0x01
SIGNATURE_DASH = "\u2014 "


class Failed(Exception):
    pass


@dataclass(frozen=True)
class Key:
    name: str
    key_id: bytes
    public: Ed25519PublicKey


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Failed(f"{what} is not base64") from exc


def _hash(value: Any, what: str) -> bytes:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError as exc:
        raise Failed(f"{what} is not hex") from exc
    if len(raw) != 32:
        raise Failed(f"{what} is {len(raw)} bytes, not 32")
    return raw


def parse_key(text: str) -> Key:
    """A signed-note verifier key; its id must be SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    parts = text.strip().split("+", 2)  # the base64 key may itself hold a '+'; a name may not
    if len(parts) != 3 or not parts[0]:
        raise Failed("a verifier key is <name>+<key id hex>+<base64 key>")
    name, key_id, encoded = parts
    raw = _b64(encoded, "the verifier key")
    if len(raw) != 33 or raw[0] != ED25519:
        raise Failed("the verifier key is not an Ed25519 key")
    wanted = _sha256(name.encode("utf-8") + b"\n" + raw)[:4]
    if key_id.lower() != wanted.hex():
        raise Failed(f"the verifier key's id {key_id} is not {wanted.hex()}, the hash of its name and key")
    return Key(name, wanted, Ed25519PublicKey.from_public_bytes(raw[1:]))


def open_note(note: str, key: Key) -> Checkpoint:
    """Verifies the note's signature by `key` and reads the checkpoint it signs."""
    text, sep, signatures = note.rpartition("\n\n")
    if not sep or not note.endswith("\n"):
        raise Failed("not a signed note (text, a blank line, signature lines, each ending in a newline)")
    text += "\n"
    for line in signatures[:-1].split("\n"):
        if not line.startswith(SIGNATURE_DASH):
            raise Failed(f"not a signature line: {line[:60]!r}")
        name, _, encoded = line[len(SIGNATURE_DASH) :].rpartition(" ")
        blob = _b64(encoded, f"the signature of {name!r}")
        if name != key.name or blob[:4] != key.key_id:
            continue  # another key's signature: signed-note verifiers ignore those
        try:
            key.public.verify(blob[4:], text.encode("utf-8"))
        except InvalidSignature as exc:
            raise Failed(f"the signature by {key.name} does not verify") from exc
        return _body(text)
    raise Failed(f"the note carries no signature by {key.name} ({key.key_id.hex()})")


def _body(text: str) -> Checkpoint:
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise Failed("a checkpoint has an origin, a tree size and a root hash")
    origin, size, root = lines[:3]
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise Failed(f"the tree size {size!r} is not a decimal number")
    digest = _b64(root, "the root hash")
    if len(digest) != 32:
        raise Failed(f"the root hash is {len(digest)} bytes, not 32")
    return Checkpoint(origin, int(size), digest)


def check_checkpoint(doc: Any, key: Key) -> Checkpoint:
    if not isinstance(doc, dict) or "note" not in doc:
        raise Failed("not a checkpoint document")
    cp = open_note(str(doc["note"]), key)
    if doc.get("tree_size") != cp.size or _hash(doc.get("root_hash"), "root_hash") != cp.root:
        raise Failed("the document's tree_size/root_hash differ from its signed note")
    if doc.get("origin", cp.origin) != cp.origin:
        raise Failed("the document's origin differs from its signed note")
    return cp


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        raise Failed(f"leaf index {index} is not in a tree of size {size}")
    if any(len(h) != 32 for h in (leaf, root, *proof)):
        raise Failed("a hash is not 32 bytes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Failed("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Failed("the inclusion proof is too short")
    if r != root:
        raise Failed("the inclusion proof does not lead to the signed root")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]) -> None:
    """RFC 9162 section 2.1.4.2."""
    if not 0 < size1 <= size2:
        raise Failed(f"no consistency proof from size {size1} to size {size2}")
    if size1 == size2:
        if proof or root1 != root2:
            raise Failed("equal sizes need equal roots and an empty proof")
        return
    if any(len(h) != 32 for h in (root1, root2, *proof)):
        raise Failed("a hash is not 32 bytes")
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    if not path:
        raise Failed("the consistency proof is empty")
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Failed("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Failed("the consistency proof is too short")
    if fr != root1 or sr != root2:
        raise Failed("the consistency proof does not lead to the signed roots")


def _proof(doc: dict[str, Any]) -> list[bytes]:
    proof = doc.get("proof")
    if not isinstance(proof, list):
        raise Failed("the document has no proof list")
    return [_hash(p, f"proof[{i}]") for i, p in enumerate(proof)]


def check(doc: Any, key: Key, saved: dict[int, bytes]) -> str:
    """Checks one document; returns what it proves."""
    if not isinstance(doc, dict):
        raise Failed("not a JSON object")
    kind = doc.get("format")
    if kind == "switchyard.ledger.checkpoint.v1":
        checkpoints = [check_checkpoint(doc, key)]
        said = f"checkpoint {checkpoints[0].size} of {checkpoints[0].origin} is signed by {key.name}"
    elif kind == "switchyard.ledger.inclusion.v1":
        cp = check_checkpoint(doc.get("checkpoint"), key)
        entry = _b64(str(doc.get("entry")), "the entry")
        leaf = _sha256(b"\x00" + entry)
        if "leaf_hash" in doc and _hash(doc["leaf_hash"], "leaf_hash") != leaf:
            raise Failed("leaf_hash is not SHA-256(0x00 || entry)")
        fields = json.loads(entry)
        seq = fields.get("seq") if isinstance(fields, dict) else None
        if not isinstance(seq, int) or doc.get("seq") != seq or doc.get("leaf_index") != seq - 1:
            raise Failed("seq / leaf_index differ from the entry's (leaf index = seq - 1)")
        if doc.get("tenant_id", fields.get("tenant_id")) != fields.get("tenant_id"):
            raise Failed("tenant_id differs from the entry's")
        if doc.get("tree_size") != cp.size:
            raise Failed("tree_size differs from the signed checkpoint's")
        verify_inclusion(seq - 1, cp.size, leaf, _proof(doc), cp.root)
        checkpoints = [cp]
        what = f"{fields.get('action')}, tenant {fields.get('tenant_id')}"
        said = f"entry {seq} ({what}) is in checkpoint {cp.size}"
    elif kind == "switchyard.ledger.consistency.v1":
        one, two = check_checkpoint(doc.get("first"), key), check_checkpoint(doc.get("second"), key)
        if one.origin != two.origin:
            raise Failed("the two checkpoints are of different logs")
        verify_consistency(one.size, two.size, one.root, two.root, _proof(doc))
        checkpoints = [one, two]
        said = f"checkpoint {one.size} is a prefix of checkpoint {two.size}"
    else:
        raise Failed(f"unknown document format {kind!r}")
    for cp in checkpoints:
        if cp.size in saved and saved[cp.size] != cp.root:
            raise Failed(f"checkpoint {cp.size} differs from the one you saved: the log was rewritten")
    return said


def _load(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise Failed(f"cannot read it as JSON ({exc})") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verifier-key", required=True, help="the published key: <name>+<id>+<key>")
    parser.add_argument("--saved", action="append", default=[], help="a checkpoint document saved earlier")
    parser.add_argument("documents", nargs="+", help="checkpoint, inclusion or consistency documents")
    args = parser.parse_args(argv)
    try:
        key = parse_key(args.verifier_key)
        saved: dict[int, bytes] = {}
        for path in args.saved:
            cp = check_checkpoint(_load(path), key)
            saved[cp.size] = cp.root
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.documents:
        try:
            print(f"ok {path}: {check(_load(path), key, saved)}")
        except (Failed, KeyError, TypeError, ValueError) as exc:
            failed += 1
            print(f"FAILED {path}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
