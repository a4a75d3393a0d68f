"""The checkpoint signing key: loaded from settings, or generated once for the embedded run.

Accepted forms (setting `SWITCHYARD_AUDIT_SIGNING_KEY`, or the file named by
`SWITCHYARD_AUDIT_SIGNING_KEY_FILE`): a PKCS#8 PEM Ed25519 private key, or the raw 32-byte seed as 64 hex
characters or standard base64. With neither set, `<var_dir>/ledger-signing.key` is used; the embedded run
(SQLite) creates it on first start with mode 0600. A PostgreSQL deployment must configure a key: replicas
must share one, and a key made on one pod's disk would be lost with it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from switchyard.audit.note import VerifierKey, verifier_key
from switchyard.common.errors import ConfigurationError

log = logging.getLogger(__name__)

DEFAULT_KEY_FILE = "ledger-signing.key"


@dataclass(frozen=True)
class Signer:
    private_key: Ed25519PrivateKey
    key: VerifierKey

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def parse_private_key(material: bytes) -> Ed25519PrivateKey:
    text = material.strip()
    if text.startswith(b"-----BEGIN"):
        loaded = serialization.load_pem_private_key(text, password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ConfigurationError("the ledger signing key is not an Ed25519 key")
        return loaded
    seed: bytes | None = None
    if len(text) == 64:
        try:
            seed = bytes.fromhex(text.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            seed = None
    if seed is None:
        try:
            seed = base64.b64decode(text, validate=True)
        except binascii.Error:
            seed = None
    if seed is None or len(seed) != 32:
        raise ConfigurationError(
            "the ledger signing key must be a PKCS#8 PEM Ed25519 key or a 32-byte seed (hex or base64)"
        )
    return Ed25519PrivateKey.from_private_bytes(seed)


def signer_from(private_key: Ed25519PrivateKey, *, origin: str) -> Signer:
    public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Signer(private_key, verifier_key(origin, public))


def generate_key_file(path: Path) -> Ed25519PrivateKey:
    """Writes a new PEM key readable by its owner only; refuses to overwrite an existing file."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def load_signer(
    *,
    origin: str,
    key: SecretStr | None,
    key_file: Path | None,
    var_dir: Path,
    create: bool,
) -> Signer | None:
    """The configured signer; `create`: make the default key file if nothing is configured."""
    if key is not None:
        return signer_from(parse_private_key(key.get_secret_value().encode("utf-8")), origin=origin)
    if key_file is not None:
        if not key_file.exists():
            raise ConfigurationError(f"SWITCHYARD_AUDIT_SIGNING_KEY_FILE: {key_file} does not exist")
        return signer_from(parse_private_key(key_file.read_bytes()), origin=origin)
    default = var_dir / DEFAULT_KEY_FILE
    if default.exists():
        return signer_from(parse_private_key(default.read_bytes()), origin=origin)
    if not create:
        return None
    try:
        private = generate_key_file(default)
    except FileExistsError:  # another process made it first
        return signer_from(parse_private_key(default.read_bytes()), origin=origin)
    log.warning("generated a new ledger signing key at %s (publish its verifier key)", default)
    return signer_from(private, origin=origin)
