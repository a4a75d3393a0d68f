"""The Files API's own errors: the store full (for everyone, or for one organisation's share), a file whose
bytes cannot be read back as stored, a file not found (in OpenAI's words)."""

from __future__ import annotations

from switchyard.common import objects
from switchyard.gateway.errors import APIError, Conflict, NotFound


class FilesFull(APIError):
    """The files bucket holds its configured limit: nothing more is stored until files are deleted."""

    status = 507
    type = "api_error"
    code = "files_storage_full"
    retry = False  # until files are deleted (or the limit raised)


class OrganisationFilesFull(FilesFull):
    """The organisation's files hold its share of the store (`SWITCHYARD_FILES_ORG_BYTES`)."""

    code = "organization_files_full"


class FileUnreadable(APIError):
    """A file's bytes came back different from what was stored, or vanished while read."""

    code = "file_unreadable"
    retry = False  # the same bytes are read again, or none


def file_not_found(file_id: str) -> NotFound:
    """OpenAI's words; the id as asked, cut short (a batch's `input_file_id` can be a megabyte of text)."""
    shown = file_id if len(file_id) <= 64 else f"{file_id[:64]}…"
    return NotFound(f"No such File object: {shown}", code="file_not_found", param="file_id")


def file_unreadable(file_id: str, exc: objects.ObjectUnreadable) -> FileUnreadable:
    """Why the file's object cannot be read, in words for the API client (no bucket or key of ours)."""
    if isinstance(exc, objects.ObjectForged):
        why = "its stored bytes were overwritten by another client of the bus (refused, logged)"
    elif isinstance(exc, objects.ObjectCorrupt):
        why = "its bytes do not match their stored size and digest"
    else:
        why = "its stored description is unreadable"
    return FileUnreadable(f"the file {file_id} cannot be read: {why}")


def description_forged(file_id: str) -> FileUnreadable:
    """The file's description (its index entry) was stored by the server on another client's behalf."""
    why = "its stored description was overwritten by another client of the bus (refused, logged)"
    return FileUnreadable(f"the file {file_id} cannot be read: {why}")


def organization_erased(tenant_id: str) -> Conflict:
    """A file written as its organisation was erased (an upload, a batch's results): removed, not kept."""
    return Conflict(
        f"the organisation {tenant_id} was erased: the file is not kept",
        code="organization_erased",
        retry=False,
    )
