"""What a provider's garbage tells the client (`bad_response`): what was wrong, in our words, never a
parser's or a library's (`unexpected character: line 1 column 2 (char 1)`, `Incorrect padding`, `Error -3
while decompressing data`), which go to the executor's log, as a network failure's do."""

from __future__ import annotations

import logging

import httpx
import pytest

from switchyard.common.errors import ProviderError
from switchyard.executor.providers.embedding_rows import from_base64
from switchyard.executor.providers.http import parse_json, transport_errors
from switchyard.executor.providers.local.adapter import _translate

pytestmark = pytest.mark.unit


def _said(raised: pytest.ExceptionInfo[ProviderError]) -> str:
    assert raised.value.kind == "bad_response" and raised.value.retryable
    return raised.value.message


def test_json_that_is_not_says_so_and_logs_the_parsers_words(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(ProviderError) as raised:
        parse_json(b"{not json", what="the chat completion")
    assert _said(raised) == "the chat completion is not valid JSON"
    assert "line 1 column" in caplog.text  # orjson's position, for the operator


async def test_a_body_that_does_not_decompress_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ProviderError) as raised:
        async with transport_errors("openai"):
            raise httpx.DecodingError("Error -3 while decompressing data: incorrect header check")
    said = _said(raised)
    assert said == "openai: the answer's body could not be decoded (its Content-Encoding)"
    assert "incorrect header check" in caplog.text


def test_base64_that_is_not_says_where_without_the_decoders_words() -> None:
    with pytest.raises(ProviderError) as raised:
        from_base64("AAA*", where="data[0].embedding")
    assert _said(raised) == "data[0].embedding is not valid base64"


def test_the_local_models_failure_is_said_in_our_words(caplog: pytest.LogCaptureFixture) -> None:
    error = _translate(RuntimeError("llama_decode returned -3"))
    assert isinstance(error, ProviderError) and error.kind == "bad_response"
    assert error.message == "local: the model failed while answering"
    assert "llama_decode returned -3" in caplog.text
    too_long = _translate(ValueError("Requested tokens (9031) exceed context window of 2048"))
    assert isinstance(too_long, ProviderError) and too_long.kind == "context_too_long"
    assert (
        too_long.message == "local: Requested tokens (9031) exceed context window of 2048"
    )  # read by the gateway
