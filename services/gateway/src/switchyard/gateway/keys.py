"""API keys: `sy_<prefix>_<secret>`. The prefix identifies the key (shown in listings and logs); only the
SHA-256 of the whole key is stored. Keys are 190 bits of randomness, so a fast hash is the right one."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_KEY_RE = re.compile(r"^sy_([A-Za-z0-9]{8})_([A-Za-z0-9]{32})$")


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def generate() -> tuple[str, str]:
    """Returns (key, prefix)."""
    prefix = _random(8)
    return f"sy_{prefix}_{_random(32)}", prefix


def parse_prefix(key: str) -> str | None:
    m = _KEY_RE.match(key)
    return m.group(1) if m else None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)
