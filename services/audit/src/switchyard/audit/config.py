from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from switchyard.audit.signing import Signer, load_signer
from switchyard.common.config import CommonSettings
from switchyard.common.db import is_sqlite

MIN_RETENTION_DAYS = 90


class AuditSettings(CommonSettings):
    audit_workers: int = Field(
        default=64,
        ge=1,
        description="events handled concurrently; a batch holding this many is written without lingering",
    )
    audit_max_batch: int = Field(
        default=500, ge=1, description="most entries appended in one transaction (at most audit_workers)"
    )
    audit_linger_ms: float = Field(
        default=100.0,
        ge=0,
        description="events are taken from the bus in bursts this far apart, and a batch waits this long "
        "for more before it is written",
    )
    audit_ack_wait_s: float = Field(default=30.0, gt=0, description="redelivery delay of an unacked event")
    audit_log_origin: str = Field(
        default="switchyard.local/ledger", description="the checkpoints' origin line and signing key name"
    )
    audit_signing_key: SecretStr | None = Field(
        default=None, description="Ed25519 key: PKCS#8 PEM, or the 32-byte seed in hex or base64"
    )
    audit_signing_key_file: Path | None = Field(default=None, description="a file holding the signing key")
    audit_checkpoint_every: int = Field(default=1000, ge=1, description="checkpoint after this many entries")
    audit_checkpoint_interval_s: float = Field(
        default=10.0, gt=0, description="or after this many seconds, when the ledger grew"
    )
    audit_retention_days: int = Field(
        default=MIN_RETENTION_DAYS,
        ge=MIN_RETENTION_DAYS,
        description="entries younger than this are never archived (at least 90)",
    )

    def signer(self, *, create: bool = False) -> Signer | None:
        """The checkpoint signer; with `create`, the embedded run (SQLite) makes a key on first use."""
        return load_signer(
            origin=self.audit_log_origin,
            key=self.audit_signing_key,
            key_file=self.audit_signing_key_file,
            var_dir=self.resolved_var_dir(),
            create=create and is_sqlite(self.db_url()),
        )
