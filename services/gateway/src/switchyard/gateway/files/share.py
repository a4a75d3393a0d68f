"""An organisation's share of the file store: at most `SWITCHYARD_FILES_ORG_COUNT` files holding at most
`SWITCHYARD_FILES_ORG_BYTES`. Every list and every upload reads all the organisation's descriptions, so
their number is bounded as their bytes are. An upload that would pass either is refused, and so is a batch
created while the organisation is at either: a batch's output and error files are written when it ends
whatever the share (its results are never lost), so the share is checked when it is created. Requests
racing each other can pass it by one each."""

from __future__ import annotations

from dataclasses import dataclass

from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.files.errors import OrganisationFilesFull
from switchyard.gateway.files.store import FileStore


@dataclass(frozen=True)
class Share:
    files: int
    bytes: int

    @classmethod
    def of(cls, settings: GatewaySettings) -> Share:
        return cls(files=settings.files_org_count, bytes=settings.files_org_bytes)

    async def check(self, store: FileStore, tenant_id: str, *, adding: int | None, then: str) -> None:
        """507 `organization_files_full` when the organisation has its count of files, or when `adding`
        bytes would take its files past its bytes; `adding` None (a batch, whose output's size is not known
        yet): when its files hold its bytes already. `then` ends the message: what to do."""
        count, used = await store.usage(tenant_id=tenant_id)
        if count >= self.files:
            raise OrganisationFilesFull(
                f"your organisation has {count} files, its limit (SWITCHYARD_FILES_ORG_COUNT is "
                f"{self.files}): {then}"
            )
        held = f"your organisation's files hold {used} of its {self.bytes} bytes (SWITCHYARD_FILES_ORG_BYTES)"
        if adding is None and used >= self.bytes:
            raise OrganisationFilesFull(f"{held}: {then}")
        if adding is not None and used + adding > self.bytes:
            raise OrganisationFilesFull(f"{held}; this file of {adding} bytes does not fit: {then}")
