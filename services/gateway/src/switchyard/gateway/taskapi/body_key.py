"""The secret an Idempotency-Key's kept body digest is sealed with (`idempotency.BodyKey`): one for every
gateway replica of a deployment, or a retry reaching another replica would not match its first request.

In order: SWITCHYARD_IDEMPOTENCY_SECRET; else derived from the gateway's own NATS password (every replica
has the same one, and nothing of it is in the bucket); else, on a bus without users, the file
`<var_dir>/idempotency.key`, made once (the replicas of one machine share it). A derived or made secret
changes with its source: retries of tasks submitted before (up to seven days) then get 409
`idempotency_key_reused` (never a second task); set the setting to keep it apart."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from switchyard.common import secret_file
from switchyard.common.errors import ConfigurationError
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.taskapi.idempotency import BodyKey

SETTING = "SWITCHYARD_IDEMPOTENCY_SECRET"
KEY_FILE = "idempotency.key"
LABEL = b"switchyard idempotency body digest v1"


def load(settings: GatewaySettings) -> tuple[BodyKey, str]:
    """The deployment's key and where it comes from (for the log: never the secret)."""
    if settings.idempotency_secret is not None:
        return BodyKey(settings.idempotency_secret.get_secret_value().encode()), SETTING
    credentials = settings.nats_credentials()
    if credentials is not None:
        password = credentials.password.get_secret_value().encode()
        return BodyKey(hmac.new(password, LABEL, hashlib.sha256).digest()), "the gateway's NATS password"
    path = settings.resolved_var_dir() / KEY_FILE
    return BodyKey(_file_secret(path)), str(path)


def _file_secret(path: Path) -> bytes:
    """The file's secret, made now if there is none (`secret_file.make_once`: the replicas of one machine
    starting together share the one that wins)."""
    try:
        secret_file.make_once(path)
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"{SETTING} is not set and {path} cannot be made or read ({exc.strerror}): set {SETTING} to one "
            "secret of at least 32 characters shared by every gateway replica (e.g. `openssl rand -base64 "
            "32`)"
        ) from None
    if not secret:
        raise ConfigurationError(f"{path} is empty: delete it (a new one is made) or set {SETTING}")
    return secret
