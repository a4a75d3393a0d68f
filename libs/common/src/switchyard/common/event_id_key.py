"""The secret every service of a deployment keys its derived event ids with (`ids.EventIdKey`).

In order: SWITCHYARD_EVENT_ID_SECRET; the file SWITCHYARD_EVENT_ID_SECRET_FILE names (docker compose and
Kubernetes mount one: `switchyard bus credentials` makes it); else, for the embedded run (SQLite, one
machine), `<var_dir>/event-id.key`, made once (`switchyard up` makes it before the services start and
names it to each). A service on PostgreSQL with none refuses to start: its replicas and the other
services must share one secret, or their ids of one event would differ (each output published twice). No
bus client may have it: with it, a system could work out its tasks' event ids and publish first under
them (publisher.py). Never logged; a changed secret changes every derived id (docs/operations/upgrades.md).
"""

from __future__ import annotations

from pathlib import Path

from switchyard.common import secret_file
from switchyard.common.config import CommonSettings
from switchyard.common.db import is_sqlite
from switchyard.common.errors import ConfigurationError
from switchyard.common.ids import MIN_SECRET_BYTES, EventIdKey

SETTING = "SWITCHYARD_EVENT_ID_SECRET"
FILE_SETTING = "SWITCHYARD_EVENT_ID_SECRET_FILE"
KEY_FILE = "event-id.key"
_HOW = "one secret of at least 32 characters shared by every service (e.g. `openssl rand -base64 32`)"


def load(settings: CommonSettings) -> tuple[EventIdKey, str]:
    """The deployment's key and where it comes from (for the log: never the secret). ConfigurationError
    when there is none the service may use: it cannot start."""
    if settings.event_id_secret is not None and settings.event_id_secret_file is not None:
        raise ConfigurationError(f"{SETTING} and {FILE_SETTING} are both set: set one of them")
    if settings.event_id_secret is not None:
        return _key(settings.event_id_secret.get_secret_value().encode(), SETTING), SETTING
    if settings.event_id_secret_file is not None:
        return _key(_read(settings.event_id_secret_file, FILE_SETTING), FILE_SETTING), FILE_SETTING
    if not is_sqlite(settings.db_url()):
        raise ConfigurationError(
            f"derived event ids need a secret: set {SETTING} or {FILE_SETTING} to {_HOW} (`switchyard bus "
            "credentials` makes one beside the NATS passwords)"
        )
    path = settings.resolved_var_dir() / KEY_FILE
    return _key(ensure_file(path), str(path)), str(path)


def ensure_file(path: Path) -> bytes:
    """The file's secret, made now if there is none (`secret_file.make_once`)."""
    try:
        secret_file.make_once(path)
    except OSError as exc:
        raise ConfigurationError(
            f"{SETTING} is not set and {path} cannot be made ({exc.strerror}): set it to {_HOW}"
        ) from None
    return _read(path, "the event id key file")


def _read(path: Path, what: str) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigurationError(f"{what} {str(path)!r} cannot be read: {exc.strerror}") from None
    if not secret:
        raise ConfigurationError(f"{what} {str(path)!r} is empty")
    return secret


def _key(secret: bytes, what: str) -> EventIdKey:
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"{what}: the event id secret is too short: set it to {_HOW}")
    return EventIdKey(secret)
