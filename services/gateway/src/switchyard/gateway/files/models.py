"""OpenAI's file object, and the list page that holds them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

# Clients upload `batch` (a batch's input JSONL); the batch runner writes `batch_output` (its output and
# error files). OpenAI's other purposes (assistants, fine-tune, vision, user_data, evals) serve APIs this
# gateway does not offer. A message batch's (Anthropic's Message Batches API) requests and results are kept
# as files of its own purpose, `message_batch`: not listed nor read through the Files API (`INTERNAL`).
FilePurpose = Literal["batch", "batch_output", "message_batch"]
INTERNAL: tuple[str, ...] = ("message_batch",)
UPLOAD_PURPOSES: tuple[str, ...] = ("batch",)


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    expires_at: int | None = None
    status: Literal["processed"] = "processed"  # deprecated by OpenAI, still returned


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
