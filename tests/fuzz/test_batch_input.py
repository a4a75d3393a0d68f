"""The batch input file, fuzzed with hypothesis: files of good requests, other JSON, broken JSON, bytes that
are not UTF-8, over-long lines, blank lines and CRLF, cut into chunks anywhere. The runner's reader
(`batches.lines.Reader`) never raises; it reads the same requests and problems however the file is cut
into chunks (the store sends 128 KiB ones, a line may straddle any number); its problems are few and short
(they are stored in the batch's record); what it keeps is a request the endpoint would take. The upload's
check (`files.upload.check_batch_input`) refuses only with a 400 `InvalidRequest`, and a file it takes is
never refused later for what it checked (JSON, UTF-8, a line's length)."""

from __future__ import annotations

import io
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard.gateway.batches import lines
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.files import upload

pytestmark = pytest.mark.unit
EXAMPLES = 60 * (25 if os.environ.get("SWITCHYARD_LONG_TESTS") == "1" else 1)  # `make fuzz`: 25x
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
CHAT = "/v1/chat/completions"
MAX_BODY = 2048  # small, so that over-long lines and bodies are cheap to make
MAX_LINE = upload.max_line_bytes(MAX_BODY)

_text = st.text(max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=12,
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "nobody"]), "content": _json | _text}
)
_body = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["auto", "", "x" * 40]) | _json,
        "messages": st.lists(_message, max_size=3) | _json,
    },
    optional={"max_tokens": _json, "stream": st.booleans(), "n": _json, "temperature": _json},
)
_request = st.fixed_dictionaries(
    {
        "custom_id": st.sampled_from(["a", "b", "c"]) | _text | _json,
        "method": st.sampled_from(["POST", "GET"]),
        "url": st.sampled_from([CHAT, "/v1/embeddings"]),
        "body": _body,
    }
)


def _line(value: Any) -> bytes:
    return orjson.dumps(value)


_lines = st.one_of(
    _request.map(_line),
    _request.map(_line),  # good-looking requests are the likelier kind
    _json.map(_line),
    st.binary(max_size=40),  # broken JSON, not UTF-8, stray whitespace
    st.sampled_from([b"", b"  ", b"\r", b"\xef\xbb\xbf{}", b'{"a": NaN}', b'{"a": "\\ud800"}', b"[" * 2000]),
    st.integers(MAX_LINE - 2, MAX_LINE + 2).map(lambda n: b'{"custom_id": "p"' + b" " * (n - 18) + b"}"),
)
_files = st.tuples(st.lists(_lines, max_size=12), st.sampled_from([b"\n", b"\r\n"]), st.booleans()).map(
    lambda parts: parts[1].join(parts[0]) + (parts[1] if parts[2] else b"")
)


def _reader() -> lines.Reader:
    return lines.Reader(endpoint=CHAT, max_prompt_chars=10_000, max_body_bytes=MAX_BODY)


def _summary(
    checked: lines.Checked,
) -> tuple[list[lines.Line], list[tuple[str, str, str | None, int | None]]]:
    return checked.lines, checked.errors


@FUZZ
@given(content=_files, cuts=st.lists(st.integers(0, 2**20), max_size=6))
def test_the_reader_reads_any_file_the_same_however_it_is_cut(content: bytes, cuts: list[int]) -> None:
    whole = lines.read(content, endpoint=CHAT, max_prompt_chars=10_000, max_body_bytes=MAX_BODY)
    reader = _reader()
    start = 0
    for cut in sorted({c % (len(content) + 1) for c in cuts}):
        reader.feed(content[start:cut])
        start = cut
    reader.feed(content[start:])
    assert _summary(reader.end()) == _summary(whole)

    numbers = content.count(b"\n") + 1
    assert whole.lines or whole.errors
    assert len(whole.errors) <= lines.MAX_ERRORS
    for _, message, _, number in whole.errors:
        assert len(message) <= lines.MAX_MESSAGE_CHARS
        assert number is None or 1 <= number <= numbers
    assert [line.index for line in whole.lines] == list(range(len(whole.lines)))
    assert len({line.custom_id for line in whole.lines}) == len(whole.lines)
    for line in whole.lines:
        assert len(line.body) <= MAX_BODY and isinstance(orjson.loads(line.body), dict)
        lines.parse(line, CHAT, max_prompt_chars=10_000, max_body_bytes=MAX_BODY)  # as it was read


@FUZZ
@given(content=_files)
def test_a_file_the_upload_takes_is_not_refused_later_for_what_the_upload_checked(content: bytes) -> None:
    try:
        upload.check_batch_input("r.jsonl", io.BytesIO(content), max_line=MAX_LINE)
    except InvalidRequest as refused:
        assert (refused.status, refused.param) == (400, "file")
        assert refused.code in ("invalid_jsonl", "empty_file")
        return
    checked = lines.read(content, endpoint=CHAT, max_prompt_chars=10_000, max_body_bytes=MAX_BODY)
    codes = {code for code, *_ in checked.errors}
    assert not codes & {"invalid_json_line", "invalid_file", "empty_file"}
    assert not any(code == "request_too_large" and param is None for code, _, param, _ in checked.errors)
