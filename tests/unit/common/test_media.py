"""Reading an image's size from its header bytes and a PDF's page count, and what garbage gives."""

from __future__ import annotations

import base64

import pytest

from switchyard.common.media import Base64Bytes, image_size, payload, pdf_pages
from tests.support import media

pytestmark = pytest.mark.unit


def _b64(data: bytes) -> Base64Bytes:
    return Base64Bytes(base64.b64encode(data).decode())


@pytest.mark.parametrize(
    "image",
    [
        media.png(300, 200),
        media.gif(300, 200),
        media.jpeg(300, 200),
        media.jpeg(300, 200, progressive=True, exif=60_000),
        media.webp(300, 200),
        media.webp(300, 200, "VP8L"),
        media.webp(300, 200, "VP8X"),
    ],
    ids=["png", "gif", "jpeg", "jpeg-progressive-big-exif", "webp-lossy", "webp-lossless", "webp-extended"],
)
def test_sizes_are_read_from_the_header(image: bytes) -> None:
    assert image_size(_b64(image)) == (300, 200)


def test_a_large_image_is_read_without_decoding_it() -> None:
    """A 4000x3000 JPEG behind a 60 KB Exif segment: only the segment headers on the way are decoded."""
    reads: list[int] = []
    data = _b64(media.jpeg(4000, 3000, exif=60_000) + b"\x00" * 5_000_000)
    real = data.read
    data.read = lambda offset, n: reads.append(n) or real(offset, n)  # type: ignore[method-assign]
    assert image_size(data) == (4000, 3000)
    assert sum(reads) < 100


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"hello, not an image",
        media.png(300, 200)[:20],  # cut in the size
        media.jpeg(300, 200)[:40],  # cut before the frame
        media.jpeg(300, 200).replace(b"\xff\xc0", b"\xff\xda"),  # a scan before any frame
        b"\xff\xd8" + b"\xff\xe1\xff\xff" * 10,  # segments that point past the end
        b"\xff\xd8" + b"\xff\xfe\x00\x02" * 1000,  # more segments than are walked
        media.png(0, 200),
        media.gif(300, 200)[:8],
        media.webp(300, 200)[:24],
        b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 20,  # no key frame start code
    ],
)
def test_garbage_gives_no_size(garbage: bytes) -> None:
    assert image_size(_b64(garbage)) is None


def test_text_that_is_not_base64_reads_as_nothing() -> None:
    assert Base64Bytes("not base64 at all!").read(0, 10) == b""
    assert image_size(Base64Bytes("@@@@" * 20)) is None
    assert payload("https://example.com/cat.png") is None
    assert payload("data:image/png,raw") is None  # not base64
    url = media.data_url("image/png", media.png(7, 9))
    found = payload(url)
    assert found is not None and image_size(found) == (7, 9)


def test_any_byte_range_decodes() -> None:
    raw = bytes(range(256)) * 4
    for padding in range(3):  # texts with two, one and no padding characters
        data = raw[: len(raw) - padding]
        lazy = _b64(data)
        assert lazy.size == len(data)
        for offset, n in ((0, 5), (1, 7), (2, 1), (5, 300), (len(data) - 3, 10), (len(data), 4)):
            assert lazy.read(offset, n) == data[offset : offset + n]


def test_a_pdfs_pages_come_from_its_page_tree() -> None:
    assert pdf_pages(_b64(media.pdf(3))) == 3  # not the outline's /Count 99
    assert pdf_pages(_b64(media.pdf(1))) == 1
    flat = media.pdf(4).replace(b"/Count 4", b"")  # no count: its page objects are counted
    assert pdf_pages(_b64(flat)) == 4


def test_a_large_pdf_is_read_at_its_ends_only() -> None:
    big = media.pdf(12)
    head, tail = big.split(b"xref\n", 1)
    padded = head + b"%" + b" " * 5_000_000 + b"\nxref\n" + tail  # a 5 MB stream's worth in between
    assert pdf_pages(_b64(padded)) == 12


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"not a pdf",
        b"%PDF-1.7\n" + b"\x00" * 1000,  # its page tree out of sight (an object stream)
        b"%PDF-1.7\n1 0 obj << /Type /Pages /Count 9999999 >> endobj",  # more pages than its size holds
        b"%PDF-1.7\n" + b"/Type /Pages " * 100_000,  # hostile: bounded work, no count
    ],
)
def test_a_pdf_without_a_believable_page_count_gives_none(garbage: bytes) -> None:
    assert pdf_pages(_b64(garbage)) is None
