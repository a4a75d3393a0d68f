"""A message batch create's body read as it arrives, `{"requests": [<request>, ...], ...}`: each request
handed on, parsed, as soon as its last byte has come, so the body is never held whole (at most one
request, one value of the body's other members, and what arrived since). The scanner finds where each
value ends (brackets matched, strings skipped); orjson parses each value, as it parsed the whole body
before, so a value is valid JSON exactly when it was. A value longer than `max_value_bytes` as sent is
scanned without being kept, and handed on as `Oversized`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

_WS = frozenset(b" \t\n\r")
# A string's characters up to its closing quote, escapes and all (a backslash at the end: not all here).
_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
_STRUCTURE = re.compile(rb'["\[\]{}]')
_SCALAR_END = re.compile(rb"[ \t\n\r,\]}]")
_CLOSING = {ord("{"): ord("}"), ord("["): ord("]")}
_SCALAR_STARTS = frozenset(b'"-0123456789tfn')


class BadJSON(ValueError):
    """The body is not a JSON object: the message says where."""


@dataclass(frozen=True)
class Oversized:
    """A value longer than the scanner keeps: its size as sent."""

    size: int


@dataclass
class Body:
    """What the body said besides its requests, once it has all come."""

    requests: Literal["missing", "array", "other"] = "missing"
    value: Any = None  # `requests` when it is not an array (or Oversized)
    count: int = 0  # the requests' array's items
    oversized: tuple[str, int] | None = None  # another member's name and size, over `max_value_bytes`
    repeated: bool = False  # `requests` given more than once


class Scanner:
    """Fed the body's chunks in order (`feed`), then told it has all come (`close`)."""

    def __init__(self, *, max_value_bytes: int) -> None:
        self.max_value_bytes = max_value_bytes
        self.body = Body()
        self._buf = bytearray()
        self._dropped = 0  # bytes of the body before `_buf`
        self._state = "start"
        self._key: str | None = None
        self._value: _Value | None = None

    def feed(self, chunk: bytes) -> list[Any]:
        """The requests whose last byte is in `chunk`, parsed (Oversized for one too long). BadJSON as
        soon as the body cannot be a JSON object; the scanner takes no more then."""
        if self._state == "broken":
            return []
        self._buf += chunk
        items: list[Any] = []
        try:
            pos = self._scan(items)
        except BadJSON:
            self._state = "broken"
            self._buf.clear()
            raise
        del self._buf[:pos]
        self._dropped += pos
        return items

    def close(self) -> Body:
        """The body as a whole, once it has all come: BadJSON unless it was one JSON object."""
        if self._state == "end":
            return self.body
        if self._dropped + len(self._buf) == 0:
            raise BadJSON("the body is empty")
        raise BadJSON(f"the body ends at byte {self._dropped + len(self._buf)}, within its JSON")

    def _scan(self, items: list[Any]) -> int:
        """Reads `_buf` from its start as far as it can; returns where it stopped (what is before is done)."""
        buf, pos = self._buf, 0
        while True:
            if self._value is not None:
                if not self._value.scan(buf):
                    return self._value.keep()
                pos = self._value.pos
                self._take(self._value.result(buf, self._dropped), items)
                self._value = None
                continue
            while pos < len(buf) and buf[pos] in _WS:
                pos += 1
            if pos == len(buf):
                return pos
            pos = self._token(buf[pos], pos)

    def _token(self, c: int, pos: int) -> int:
        state = self._state
        if state == "start":
            if c != ord("{"):
                what = "a JSON object" if c in _SCALAR_STARTS or c == ord("[") else "JSON"
                raise BadJSON(f"the body is not {what} (byte {self._dropped + pos})")
            self._state = "key_or_end"
        elif state in ("key_or_end", "key") and c == ord('"'):
            return self._begin(pos, "key_done")
        elif c == ord("}") and state in ("key_or_end", "after_value"):
            self._state = "end"
        elif state == "after_value" and c == ord(","):
            self._state = "key"
        elif state == "colon" and c == ord(":"):
            self._state = "value"
        elif state == "value":
            if self._key == "requests" and c == ord("["):
                self.body.repeated |= self.body.requests != "missing"
                self.body.requests, self.body.count = "array", 0
                self._state = "first_item"
            else:
                return self._begin(pos, "value_done")
        elif c == ord("]") and state in ("first_item", "next_item"):
            self._state = "after_value"
        elif state == "next_item" and c == ord(","):
            self._state = "item"
        elif state in ("first_item", "item"):
            return self._begin(pos, "item_done")
        else:
            raise BadJSON(f"unexpected {chr(c)!r} at byte {self._dropped + pos}")
        return pos + 1

    def _begin(self, pos: int, then: str) -> int:
        """A value starts at `pos`: scanned to its end, then taken in state `then`."""
        self._value, self._state = _Value(pos, self.max_value_bytes), then
        return pos

    def _take(self, value: Any, items: list[Any]) -> None:
        """A value scanned to its end: a key, a member's value or a request."""
        state = self._state
        if state == "key_done":
            if not isinstance(value, str):
                raise BadJSON("a member's name of more than the longest value taken")
            self._key, self._state = value, "colon"
        elif state == "item_done":
            items.append(value)
            self.body.count += 1
            self._state = "next_item"
        else:
            if self._key == "requests":
                self.body.repeated |= self.body.requests != "missing"
                self.body.requests, self.body.value = "other", value
            elif isinstance(value, Oversized) and self.body.oversized is None:
                self.body.oversized = (self._key or "", value.size)
            self._state = "after_value"


class _Value:
    """One JSON value being scanned to its end: brackets matched, strings skipped (escapes and all); its
    bytes kept (from `start`) and parsed once complete, unless it grew past `limit`. `pos`: where the scan
    goes on."""

    def __init__(self, start: int, limit: int) -> None:
        self.start = self.pos = start
        self.limit = limit
        self.closing: list[int] = []
        self.in_string = self.scalar = self.began = self.oversized = False
        self.dropped = 0  # its bytes no longer kept, once oversized

    def scan(self, buf: bytearray) -> bool:
        """Scans on: True once the value is complete (`pos` its end)."""
        if not self.began:
            self.began = True
            c = buf[self.pos]
            if c in _CLOSING:
                self.closing.append(_CLOSING[c])
            elif c == ord('"'):
                self.in_string = True
            else:
                self.scalar = True
            self.pos += 1
        done, self.pos = self._scan(buf, self.pos)
        return done

    def _scan(self, buf: bytearray, pos: int) -> tuple[bool, int]:
        if self.scalar:
            end = _SCALAR_END.search(buf, pos)
            return (True, end.start()) if end else (False, len(buf))
        while True:
            if self.in_string:
                pos = _string_end(buf, pos)
                if pos == len(buf) or buf[pos] != ord('"'):  # the string, or its escape, goes on
                    return False, pos
                self.in_string, pos = False, pos + 1
                if not self.closing:
                    return True, pos
                continue
            found = _STRUCTURE.search(buf, pos)
            if found is None:
                return False, len(buf)
            c, pos = buf[found.start()], found.end()
            if c == ord('"'):
                self.in_string = True
            elif c in _CLOSING:
                self.closing.append(_CLOSING[c])
            elif self.closing.pop() != c:
                raise BadJSON(f"unmatched {chr(c)!r} in a value")
            elif not self.closing:
                return True, pos

    def keep(self) -> int:
        """The value incomplete, how many bytes of the buffer can go: those before it, or (once it is
        longer than `limit`) all it has scanned, its bytes no longer kept. Moves `start` and `pos` so."""
        if not self.oversized and self.pos - self.start > self.limit:
            self.oversized = True
        drop = self.pos if self.oversized else self.start
        self.dropped += drop - self.start
        self.start, self.pos = 0, self.pos - drop
        return drop

    def result(self, buf: bytearray, offset: int) -> Any:
        """The complete value (Oversized past `limit`), parsed. BadJSON if orjson refuses it."""
        size = self.dropped + self.pos - self.start
        if self.oversized or size > self.limit:
            return Oversized(size)
        try:
            return orjson.loads(bytes(buf[self.start : self.pos]))
        except orjson.JSONDecodeError as exc:
            raise BadJSON(f"{exc.msg}, in the value at byte {offset + self.start}") from None


def _string_end(buf: bytearray, pos: int) -> int:
    """Where the string whose characters go on at `pos` ends (its closing quote), or where it stops short:
    the end of `buf`, or a backslash at its end. A string without escapes is found at memchr's speed."""
    quote = buf.find(b'"', pos)
    if buf.find(b"\\", pos, len(buf) if quote < 0 else quote) < 0:
        return len(buf) if quote < 0 else quote
    return _STRING_BODY.match(buf, pos).end()  # type: ignore[union-attr]  # it matches empty
