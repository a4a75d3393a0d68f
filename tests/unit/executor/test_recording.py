"""The call recorder: every call, answered or failed, is recorded once, and what it raises is in the
executor's error taxonomy (an adapter's own error as it is; anything else as `bad_response`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage
from switchyard.executor.providers.base import (
    EmbeddingCall,
    EmbeddingReply,
    ProviderCall,
    Reply,
    StreamPart,
    TextDelta,
)
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.recording import CallRecord, RecordingProvider

pytestmark = pytest.mark.unit
CALL = ProviderCall(model="m", messages=(ChatMessage(role="user", content="Hi"),))


class Raising:
    """Fails every way a call can: with `error` on a request, a stream (after one delta) and an embedding."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def request(self, call: ProviderCall) -> Reply:
        raise self.error

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        yield TextDelta("Hel")
        raise self.error

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        raise self.error


async def _each_way(provider: RecordingProvider) -> list[ProviderError]:
    raised: list[ProviderError] = []
    with pytest.raises(ProviderError) as a:
        await provider.request(CALL)
    raised.append(a.value)
    with pytest.raises(ProviderError) as b:
        async for _ in provider.stream(CALL):
            pass
    raised.append(b.value)
    with pytest.raises(ProviderError) as c:
        await provider.embed(EmbeddingCall(model="m", inputs=("x",)))
    raised.append(c.value)
    return raised


@pytest.mark.parametrize(
    ("error", "kind"),
    [(provider_error("rate_limited", "m: slow down"), "rate_limited"), (KeyError("choices"), "bad_response")],
)
async def test_a_failed_call_is_recorded_once_and_raised_in_the_taxonomy(error: Exception, kind: str) -> None:
    records: list[CallRecord] = []

    async def on_call(record: CallRecord) -> None:
        records.append(record)

    provider = RecordingProvider(Raising(error), provider="openai", model="openai/m", on_call=on_call)
    raised = await _each_way(provider)
    assert [e.kind for e in raised] == [kind] * 3
    if isinstance(error, ProviderError):
        assert all(e is error for e in raised)  # the adapter's own error, unchanged
    else:
        # the library's words (`KeyError: 'choices'`) go to the log with the traceback, not to the client
        assert all(
            e.__cause__ is error and e.message == "openai: the answer could not be read" for e in raised
        )
    assert [r.outcome for r in records] == [kind] * 3
    assert records[1].ttft_ms is not None  # the stream had sent text before it failed
