"""Measuring the media in a prompt without decoding it: an image's width and height from its header bytes
(PNG, JPEG, GIF, WebP: the formats every provider takes), a PDF's page count from its page tree. Both read
a base64 data URL's payload lazily (`Base64Bytes`: only the bytes asked for are decoded) and do bounded
work on any input: a truncated, garbage or hostile payload gives None (the caller's fallback), never an
exception, and never more than `PDF_WINDOW` bytes decoded twice or `MAX_JPEG_SEGMENTS` segments walked."""

from __future__ import annotations

import binascii
import re
import struct
from base64 import b64decode

MAX_JPEG_SEGMENTS = 256
PDF_WINDOW = 1 << 18  # a PDF's first and last 256 KiB are read (its whole when it is at most twice that)
MAX_PAGE_NODES = 256  # `/Type /Pages` objects looked into per window (a page tree's root is one of them)
PAGE_NODE_BYTES = 16_384  # of each, from its `obj` on
MIN_PAGE_BYTES = 40  # the smallest page object ("3 0 obj<</Type/Page/Parent 2 0 R>>endobj") is about this
MAX_SIDE = 1 << 16  # no provider takes an image wider or higher (Anthropic refuses past 8,000 px)
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they hold the frame's size.
SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers with no length after them: TEM, RST0-7, SOI.
BARE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8})


class Base64Bytes:
    """The bytes a base64 text stands for (from `start` in `text`: a data URL's payload, not copied out of
    it), decoded a window at a time (4 characters carry 3 bytes, so any byte range decodes from its own
    slice of the text)."""

    def __init__(self, text: str, start: int = 0) -> None:
        self.text = text
        self.start = start
        padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
        self.size = max(len(text) - start - padding, 0) * 3 // 4

    def read(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes from `offset` (fewer at the end; none for text that is not base64)."""
        if offset < 0 or n <= 0 or offset >= self.size:
            return b""
        start, end = offset // 3 * 4, -(-(offset + n) // 3) * 4
        chunk = self.text[self.start + start : self.start + end]
        try:
            data = b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
        except (binascii.Error, ValueError):
            return b""
        skip = offset - start // 4 * 3
        return data[skip : skip + n]


def payload(url: str) -> Base64Bytes | None:
    """A base64 data URL's payload (`data:<type>;base64,<data>`), or None for any other URL."""
    comma = url.find(",", 0, 256)  # a media type is short; the payload is not looked through
    if comma < 0 or not url.startswith("data:") or not url.endswith(";base64", 0, comma):
        return None
    return Base64Bytes(url, comma + 1)


def image_size(data: Base64Bytes) -> tuple[int, int] | None:
    """(width, height) in pixels from a PNG, JPEG, GIF or WebP header; None when the bytes are none of
    these, are cut short before the size, or give a size of 0 or past `MAX_SIDE`."""
    head = data.read(0, 32)
    size: tuple[int, int] | None = None
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        size = struct.unpack(">II", head[16:24])
    elif head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        size = struct.unpack("<HH", head[6:10])
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        size = _webp(head)
    elif head[:2] == b"\xff\xd8":
        size = _jpeg(data)
    if size is None or not all(0 < side <= MAX_SIDE for side in size):
        return None
    return size


def _webp(head: bytes) -> tuple[int, int] | None:
    kind, body = head[12:16], head[20:32]
    if len(body) < 10:
        return None
    if kind == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":  # lossy: a key frame's start code, then 14-bit sizes
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and body[0] == 0x2F:  # lossless: 14-bit sizes less one, packed after the signature
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":  # extended: 24-bit canvas sizes less one
        return int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
    return None


def _jpeg(data: Base64Bytes) -> tuple[int, int] | None:
    """The size in the first start-of-frame segment, walking the segments before it by their lengths."""
    at = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        head = data.read(at, 9)
        if len(head) < 2 or head[0] != 0xFF:
            return None
        marker = head[1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker in BARE:
            at += 2
            continue
        if len(head) < 4 or marker == 0xDA:  # the scan began: no frame header before it
            return None
        if marker in SOF:
            if len(head) < 9:
                return None
            height, width = struct.unpack(">HH", head[5:9])
            return width, height
        at += 2 + int.from_bytes(head[2:4], "big")
    return None


_LINEARIZED = re.compile(rb"/Linearized\b[^>]{0,400}?/N\s+(\d{1,7})\b")
_PAGES = re.compile(rb"/Type\s*/Pages\b")
_COUNT = re.compile(rb"/Count\s+(\d{1,7})\b")
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


def pdf_pages(data: Base64Bytes) -> int | None:
    """A PDF's page count: its page tree root's `/Count` (the largest count of a `/Type /Pages` object),
    else a linearized file's `/N`, else its page objects counted (when the whole file was read); None
    when it is not a PDF or its page tree is out of sight (compressed into object streams). Reads the
    first and last `PDF_WINDOW` bytes at most; a count no file of its size could hold is not believed."""
    whole = data.size <= 2 * PDF_WINDOW
    head = data.read(0, data.size if whole else PDF_WINDOW)
    if b"%PDF-" not in head[:1024]:
        return None
    windows = [head] if whole else [head, data.read(data.size - PDF_WINDOW, PDF_WINDOW)]
    counts = [count for window in windows for count in _tree_counts(window)]
    pages: int | None = max(counts) if counts else None
    if pages is None and (linear := _LINEARIZED.search(head, 0, 4096)) is not None:
        pages = int(linear.group(1))
    if pages is None and whole:
        pages = sum(1 for _ in _PAGE.finditer(head)) or None
    if pages is None or not 0 < pages <= max(1, data.size // MIN_PAGE_BYTES):
        return None
    return pages


def _tree_counts(text: bytes) -> list[int]:
    """The `/Count` of each `/Type /Pages` object in `text`: looked for within that object only (from its
    `obj` to its `endobj`, `PAGE_NODE_BYTES` at most), as an outline's `/Count` is another thing; the
    first `MAX_PAGE_NODES` of them."""
    counts: list[int] = []
    for n, found in enumerate(_PAGES.finditer(text)):
        if n == MAX_PAGE_NODES:
            break
        start = max(text.rfind(b"obj", max(0, found.start() - 4096), found.start()), 0)
        end = text.find(b"endobj", found.end(), start + PAGE_NODE_BYTES)
        body = text[start : end if end >= 0 else start + PAGE_NODE_BYTES]
        counts += [int(c.group(1)) for c in _COUNT.finditer(body)]
    return counts
