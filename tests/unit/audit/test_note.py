"""Checkpoints as C2SP signed notes: an outsider verifies them with nothing but an Ed25519 library."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from switchyard.audit.config import AuditSettings
from switchyard.audit.note import CheckpointBody, NoteError, open_note, parse_verifier_key, signed_note
from switchyard.audit.signing import generate_key_file, load_signer, parse_private_key, signer_from
from switchyard.common.errors import ConfigurationError

pytestmark = pytest.mark.unit

SEED = bytes(range(32))
ORIGIN = "example.com/ledger"
ROOT = hashlib.sha256(b"root").digest()
WHEN = datetime(2026, 11, 22, 10, 15, 30, 123456, tzinfo=UTC)


def _note() -> tuple[str, object]:
    signer = signer_from(parse_private_key(SEED.hex().encode()), origin=ORIGIN)
    body = CheckpointBody(ORIGIN, 1234, ROOT, WHEN)
    return signed_note(body, signer.key, signer.sign(body.text().encode())), signer


def test_the_note_is_the_documented_bytes_and_verifies_with_plain_ed25519() -> None:
    note, signer = _note()
    root_b64 = base64.b64encode(ROOT).decode()
    text = f"{ORIGIN}\n1234\n{root_b64}\ntime 2026-11-22T10:15:30.123456Z\n"
    assert note.startswith(text + "\n\u2014 " + ORIGIN + " ")
    # What an outsider does, from the spec alone:
    public = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw_public).digest()[:4]
    signature_line = note.rstrip("\n").rsplit("\n", 1)[1]
    blob = base64.b64decode(signature_line.split(" ")[2])
    assert blob[:4] == key_id
    Ed25519PublicKey.from_public_bytes(raw_public).verify(blob[4:], text.encode())
    encoded = base64.b64encode(bytes([1]) + raw_public).decode()
    vkey = f"{ORIGIN}+{key_id.hex()}+{encoded}"
    assert signer.key.text() == vkey  # type: ignore[attr-defined]
    body = open_note(note, parse_verifier_key(vkey))
    assert (body.tree_size, body.root_hash, body.time) == (1234, ROOT, WHEN)


@pytest.mark.parametrize(
    "change",
    [
        lambda n: n.replace("\n1234\n", "\n1235\n"),
        lambda n: n.replace("time 2026", "time 2027"),
        lambda n: n.replace(ORIGIN + "\n", "evil.com/ledger\n", 1),
        lambda n: n[:-10] + "AAAAAAAAA\n",
        lambda n: n.rstrip("\n"),
        lambda n: n.replace("\n\n", "\n"),
    ],
)
def test_any_change_is_refused(change: object) -> None:
    note, signer = _note()
    with pytest.raises(NoteError):
        open_note(change(note), signer.key)  # type: ignore[operator, attr-defined]


def test_another_key_is_refused_and_bad_verifier_keys_are_named() -> None:
    note, _ = _note()
    other = signer_from(Ed25519PrivateKey.generate(), origin=ORIGIN)
    with pytest.raises(NoteError, match="no signature"):
        open_note(note, other.key)
    for bad in ("nonsense", f"{ORIGIN}+00000000+AAAA", f"{ORIGIN}+zz+{base64.b64encode(bytes(33)).decode()}"):
        with pytest.raises(NoteError):
            parse_verifier_key(bad)


def test_key_forms_and_the_generated_key_file(tmp_path: Path) -> None:
    pem = Ed25519PrivateKey.from_private_bytes(SEED).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    keys = {
        parse_private_key(m).private_bytes_raw() for m in (pem, SEED.hex().encode(), base64.b64encode(SEED))
    }
    assert keys == {SEED}
    with pytest.raises(ConfigurationError):
        parse_private_key(b"not a key")
    made = generate_key_file(tmp_path / "k.pem")
    assert stat.S_IMODE(os.stat(tmp_path / "k.pem").st_mode) == 0o600
    with pytest.raises(FileExistsError):
        generate_key_file(tmp_path / "k.pem")
    loaded = load_signer(origin=ORIGIN, key=None, key_file=tmp_path / "k.pem", var_dir=tmp_path, create=False)
    assert loaded is not None and loaded.private_key.private_bytes_raw() == made.private_bytes_raw()


def test_the_embedded_run_makes_a_key_and_postgresql_must_configure_one(tmp_path: Path) -> None:
    embedded = AuditSettings(var_dir=tmp_path, database_url=None)
    assert embedded.signer(create=False) is None
    first = embedded.signer(create=True)
    assert first is not None and (tmp_path / "ledger-signing.key").exists()
    again = embedded.signer(create=True)
    assert again is not None and again.key == first.key  # the same key on every later start
    production = AuditSettings(var_dir=tmp_path / "pg", database_url="postgresql+asyncpg://u@h/db")
    assert production.signer(create=True) is None and not (tmp_path / "pg").exists()
    with pytest.raises(ValueError):
        AuditSettings(audit_retention_days=30)
