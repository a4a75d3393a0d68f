"""What a failed connection to a provider tells the client: the kind of failure, not the upstream's address
or the HTTP library's words (which name an internal server's host and port); those go to the log."""

from __future__ import annotations

import httpx
import pytest

from switchyard.common.errors import ProviderError
from switchyard.executor.providers.http import transport_errors

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (httpx.ConnectError("Cannot connect to host 10.0.3.5:8000 ssl:default"), "openai: could not connect"),
        (
            httpx.RemoteProtocolError("Response payload is not completed: <TransferEncodingError: 400>"),
            "openai: the connection broke, or the answer was not valid HTTP",
        ),
        (httpx.NetworkError("something else at 10.0.3.5"), "openai: the connection failed"),
    ],
)
async def test_a_network_failure_says_its_kind_and_logs_the_rest(
    exc: Exception, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ProviderError) as caught:
        async with transport_errors("openai"):
            raise exc
    assert caught.value.kind == "network" and caught.value.message == said
    assert "10.0.3.5" not in caught.value.message
    assert str(exc) in caplog.text  # the operator still has the details
