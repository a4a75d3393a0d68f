"""Checkpoints as C2SP signed notes (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint). Pure.

A checkpoint is this UTF-8 text, each line ending in a newline:

    <origin>                          e.g. switchyard.local/ledger
    <tree size, decimal>              e.g. 1234
    <root hash, standard base64>      the RFC 6962 root (MTH) of the first <tree size> entries
    time <UTC RFC 3339, microseconds> an extension line: when the checkpoint was made
    (an empty line)
    — <key name> <base64(key id || signature)>

- the signature is Ed25519 over the bytes of the first four lines (the note text, with its final newline);
- the key name is the origin; the key id is the first 4 bytes of SHA-256(key name || 0x0A || 0x01 ||
  32-byte public key), as signed-note defines for Ed25519;
- the verifier key, published out of band, is `<name>+<key id hex>+<base64(0x01 || public key)>`.

Any Ed25519 library checks a checkpoint: split at the last "\\n\\n", verify the signature line's
signature (after its 4-byte key id) over the text before it, then read size and root from the lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from switchyard.audit.chain import timestamp

ED25519 = 0x01
SIGNATURE_DASH = "\u2014 "
TIME_PREFIX = "time "


class NoteError(ValueError):
    """A checkpoint that is malformed or whose signature does not verify."""


@dataclass(frozen=True, slots=True)
class CheckpointBody:
    origin: str
    tree_size: int
    root_hash: bytes
    time: datetime

    def text(self) -> str:
        root = base64.b64encode(self.root_hash).decode("ascii")
        return f"{self.origin}\n{self.tree_size}\n{root}\n{TIME_PREFIX}{timestamp(self.time)}\n"


@dataclass(frozen=True, slots=True)
class VerifierKey:
    name: str
    key_id: bytes
    public_key: bytes

    def text(self) -> str:
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{encoded}"


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> VerifierKey:
    check_name(name)
    return VerifierKey(name, key_id(name, public_key), public_key)


def check_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise NoteError(f"a key name / origin must be non-empty, without spaces or '+': {name!r}")


def parse_verifier_key(text: str) -> VerifierKey:
    try:
        name, kid, encoded = text.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
        wanted = bytes.fromhex(kid)
    except (ValueError, binascii.Error) as exc:
        raise NoteError(f"not a verifier key (<name>+<hex id>+<base64 key>): {exc}") from exc
    if len(raw) != 33 or raw[0] != ED25519:
        raise NoteError("the verifier key is not an Ed25519 key")
    key = verifier_key(name, raw[1:])
    if key.key_id != wanted:
        raise NoteError("the verifier key's id does not match its name and key")
    return key


def signed_note(body: CheckpointBody, key: VerifierKey, signature: bytes) -> str:
    encoded = base64.b64encode(key.key_id + signature).decode("ascii")
    return f"{body.text()}\n{SIGNATURE_DASH}{key.name} {encoded}\n"


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """(signed text, [(key name, key id, signature)]) of a signed note."""
    if not note.endswith("\n"):
        raise NoteError("a signed note ends with a newline")
    text, sep, sigs = note.rpartition("\n\n")
    if not sep:
        raise NoteError("a signed note has a blank line before its signatures")
    signatures = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith(SIGNATURE_DASH):
            raise NoteError(f"not a signature line: {line[:60]!r}")
        name, _, encoded = line[len(SIGNATURE_DASH) :].partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise NoteError(f"the signature of {name!r} is not base64") from exc
        if len(raw) < 5:
            raise NoteError(f"the signature of {name!r} is too short")
        signatures.append((name, raw[:4], raw[4:]))
    return text + "\n", signatures


def parse_body(text: str) -> CheckpointBody:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("a checkpoint has an origin, a size and a root hash, each on its own line")
    origin, size, root = lines[0], lines[1], lines[2]
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise NoteError(f"the tree size {size!r} is not a decimal number")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except binascii.Error as exc:
        raise NoteError("the root hash is not base64") from exc
    if len(root_hash) != 32:
        raise NoteError(f"the root hash is {len(root_hash)} bytes, not 32")
    when = next((line[len(TIME_PREFIX) :] for line in lines[3:-1] if line.startswith(TIME_PREFIX)), None)
    if when is None:
        raise NoteError("the checkpoint has no `time` line")
    try:
        moment = datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise NoteError(f"the time {when!r} is not RFC 3339") from exc
    return CheckpointBody(origin, int(size), root_hash, moment)


def open_note(note: str, key: VerifierKey) -> CheckpointBody:
    """Verifies `note`'s signature by `key` and returns the checkpoint it signs."""
    text, signatures = split_note(note)
    for name, kid, signature in signatures:
        if name != key.name or kid != key.key_id:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(key.public_key).verify(signature, text.encode("utf-8"))
        except InvalidSignature as exc:
            raise NoteError(f"the signature by {key.name} ({key.key_id.hex()}) does not verify") from exc
        body = parse_body(text)
        if body.origin != key.name:
            raise NoteError(f"the checkpoint's origin {body.origin!r} is not the key's name {key.name!r}")
        return body
    raise NoteError(f"the note carries no signature by {key.name} ({key.key_id.hex()})")
