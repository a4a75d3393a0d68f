"""The Files API's pure parts: file ids that sort by creation, a list's page and cursor, expiry, the batch
input check, the content check against the stored size and digest, the refusals of a purpose."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import AsyncIterator

import pytest
from nats.js import api
from starlette.datastructures import FormData, UploadFile

from switchyard.common import objects
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.files import errors as file_errors
from switchyard.gateway.files import store, upload
from switchyard.gateway.files.models import FileObject

pytestmark = pytest.mark.unit
MAX_LINE = 1024


def _file(file_id: str, *, purpose: str = "batch", expires_at: int | None = None) -> FileObject:
    return FileObject(
        id=file_id,
        bytes=1,
        created_at=0,
        filename="f.jsonl",
        purpose=purpose,
        expires_at=expires_at,  # type: ignore[arg-type]
    )


def test_file_ids_are_ours_and_sort_by_creation_time() -> None:
    ids = [store.new_file_id(ms) for ms in (1_000, 1_001, 62**5, 1_796_517_309_000)]
    assert all(store.is_file_id(i) and len(i) == 29 for i in ids)
    assert ids == sorted(ids)
    assert len({store.new_file_id(5) for _ in range(100)}) == 100  # the random part tells same-ms ids apart
    for foreign in ("file-abc", "file-" + "a" * 23 + "_", "x" * 29, "file-" + "a" * 24 + ".>"):
        assert not store.is_file_id(foreign)


def test_tenant_part_is_a_hash_that_makes_a_key_token() -> None:
    part = store.tenant_part("org.with spaces/and>wildcards")
    assert len(part) == 32 and part.isalnum()
    assert part != store.tenant_part("another")


def test_a_page_follows_the_cursor_in_either_order_even_when_its_file_is_gone() -> None:
    files = [_file(store.new_file_id(ms)) for ms in (10, 20, 30, 40)]
    ids = [f.id for f in files]
    newest, more = store.page(files, limit=2, after=None, order="desc")
    assert [f.id for f in newest] == [ids[3], ids[2]] and more
    rest, more = store.page(files, limit=2, after=ids[2], order="desc")
    assert [f.id for f in rest] == [ids[1], ids[0]] and not more
    oldest, more = store.page(files, limit=10, after=None, order="asc")
    assert [f.id for f in oldest] == ids and not more
    gone = store.new_file_id(25)  # a cursor whose file was deleted still places the page
    assert [f.id for f in store.page(files, limit=10, after=gone, order="asc")[0]] == ids[2:]
    assert [f.id for f in store.page(files, limit=10, after=gone, order="desc")[0]] == [ids[1], ids[0]]


def test_a_file_expires_at_its_expiry() -> None:
    assert not store.expired(_file(store.new_file_id()), 1e12)
    assert store.expired(_file(store.new_file_id(), expires_at=100), 100.0)
    assert not store.expired(_file(store.new_file_id(), expires_at=100), 99.5)


@pytest.mark.parametrize(
    ("name", "data", "code", "says"),
    [
        ("r.txt", b"{}\n", "invalid_file_format", ".jsonl"),
        ("r.jsonl", b"", "empty_file", "empty"),
        ("r.jsonl", b"\n \r\n\t\n", "empty_file", "empty"),
        ("r.jsonl", b'{"a": 1}\n[1, 2]\n', "invalid_jsonl", "line 2 is not a JSON object"),
        ("r.jsonl", b'{"a": 1}\n\n{"a": \n', "invalid_jsonl", "line 3 is not valid JSON"),
        ("r.jsonl", b'{"a": "\xc3"}\n', "invalid_jsonl", "line 1 is not UTF-8"),
    ],
)
def test_a_bad_batch_input_file_is_refused_naming_its_fault(
    name: str, data: bytes, code: str, says: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        upload.check_batch_input(name, io.BytesIO(data), max_line=MAX_LINE)
    assert (refused.value.code, refused.value.param) == (code, "file")
    assert says in refused.value.message


def test_a_good_batch_input_file_passes_and_is_left_at_its_start() -> None:
    data = io.BytesIO(
        b'{"custom_id": "1", "body": {"x": "caf\xc3\xa9"}}\r\n\n{"custom_id": "2"}'
    )  # no last newline
    data.seek(5)
    upload.check_batch_input("Requests.JSONL", data, max_line=MAX_LINE)
    assert data.tell() == 0


def test_a_line_longer_than_a_request_is_refused_without_reading_it_whole() -> None:
    """A body the endpoint would take, padded with spaces past the limit: valid JSON, but never parsed
    (a 100 MiB line would be held, then parsed into objects several times its size)."""
    padded = b'{"custom_id": "a", "body": {}' + b" " * (MAX_LINE) + b"}\n"
    data = io.BytesIO(b'{"custom_id": "ok"}\n' + padded)
    with pytest.raises(InvalidRequest) as refused:
        upload.check_batch_input("r.jsonl", data, max_line=MAX_LINE)
    assert (refused.value.code, refused.value.param) == ("invalid_jsonl", "file")
    assert f"line 2 is longer than {MAX_LINE} bytes" in refused.value.message
    exact = b'{"a": 1' + b" " * (MAX_LINE - 8) + b"}"  # exactly the limit, with and without its newline
    for tail in (b"\n", b""):
        upload.check_batch_input("r.jsonl", io.BytesIO(exact + tail), max_line=MAX_LINE)


@pytest.mark.parametrize("raw", ["5", "0012", "10000"])
def test_digits_are_ascii_integers_int_can_read(raw: str) -> None:
    assert upload.digits(raw) and int(raw) >= 0


@pytest.mark.parametrize("raw", ["²", "١٢", "-1", "1.5", "", " 1", "9" * 5000])
def test_digits_refuse_what_int_would_refuse_or_misread(raw: str) -> None:
    assert not upload.digits(raw)


@pytest.mark.parametrize(
    ("purpose", "says"),
    [("batch_output", "written by Switchyard"), ("fine-tune", "not served"), ("x" * 100, "not a purpose")],
)
def test_a_refused_purpose_names_the_accepted_one(purpose: str, says: str) -> None:
    message = upload._purpose_refused(purpose)
    assert says in message and "`batch`" in message and len(message) < 200


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _info(data: bytes) -> api.ObjectInfo:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    return api.ObjectInfo(
        name="k", bucket="b", nuid="n", size=len(data), chunks=2, digest=f"SHA-256={digest}"
    )


async def test_content_is_checked_against_its_stored_size_and_digest() -> None:
    info = _info(b"hello world")
    read = store._checked(objects.checked(_chunks(b"hello ", b"world"), info), "file-x")
    assert b"".join([c async for c in read]) == b"hello world"
    for parts in ((b"hello ", b"World"), (b"hello ",)):
        with pytest.raises(file_errors.FileUnreadable, match="do not match their stored size and digest"):
            _ = [c async for c in store._checked(objects.checked(_chunks(*parts), info), "file-x")]


def _form(*fields: tuple[str, str], filename: str = "r.jsonl") -> FormData:
    upload_file = UploadFile(io.BytesIO(b"{}\n"), size=3, filename=filename)
    return FormData([("file", upload_file), *fields])


def test_a_field_sent_twice_is_refused_rather_than_one_of_them_taken() -> None:
    """`purpose=fine-tune` then `purpose=batch`: the parser kept the last, so what was checked and what a
    proxy or log in front of the gateway saw could differ."""
    form = _form(("purpose", "fine-tune"), ("purpose", "batch"))
    with pytest.raises(InvalidRequest) as refused:
        upload._checked(form, 1024)
    assert (refused.value.code, refused.value.param) == ("invalid_value", "purpose")
    assert "more than once" in refused.value.message


@pytest.mark.parametrize("name", ["a\r\nx-evil: 1.jsonl", "a\x00.jsonl", "\x1b[31mred.jsonl", "a\x85.jsonl"])
def test_a_filename_with_control_characters_is_refused(name: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        upload._checked(_form(("purpose", "batch"), filename=name), 1024)
    assert (refused.value.code, refused.value.param) == ("invalid_value", "file")


@pytest.mark.parametrize("name", ["../../etc/passwd.jsonl", "C:\\x\\r.jsonl", "café 東京.jsonl"])
def test_other_filenames_are_kept_as_sent(name: str) -> None:
    """A file's name is only ever returned as JSON text (never a path here, nor a response header)."""
    assert upload._checked(_form(("purpose", "batch"), filename=name), 1024).filename == name


def test_a_file_not_found_quotes_the_id_asked_for_cut_short() -> None:
    """A batch's `input_file_id` is read from a body of up to SWITCHYARD_MAX_BODY_BYTES: it was echoed
    whole in the 404."""
    assert file_errors.file_not_found("file-abc").message == "No such File object: file-abc"
    assert len(file_errors.file_not_found("x" * 1_000_000).message) < 100
