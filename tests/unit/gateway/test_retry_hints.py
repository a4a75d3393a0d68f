"""Whether a client should send a failed request again, as the OpenAI and Anthropic SDKs read it: their
`_should_retry` (Python and JS alike) obeys `x-should-retry` first, then retries 408, 409, 429 and >= 500
twice by default. A failure that the same request meets again says `false` (before, a provider key that is
wrong was asked three times); one our Retry-After says will pass says `true`; the rest say nothing and
leave it to the status. Said alike on the OpenAI, Anthropic and Gemini faces."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.requests import Request

from switchyard.common.events import TaskFailed
from switchyard.gateway.errors import APIError, Conflict, GatewayStopping, RateLimited, error_response
from switchyard.gateway.files.errors import FilesFull, FileUnreadable, OrganisationFilesFull
from switchyard.gateway.limits.models import Check
from switchyard.gateway.limits.service import _refusal
from switchyard.gateway.outcomes import raise_for_failure
from switchyard.gateway.taskapi.idempotency import BodyDigest, replayed
from switchyard.gateway.taskapi.models import TaskState

pytestmark = pytest.mark.unit

FACES = ("/v1/chat/completions", "/v1/messages", "/v1beta/models/gemini-2.5-flash:generateContent")


def _failure(code: str, retry_after_s: float | None = None) -> APIError:
    failed = TaskFailed(
        task_id="t1",
        tenant_id="acme",
        error_code=code,
        error_message=f"every candidate failed (m: {code.removeprefix('provider_')}); last: m: refused",
        failed_at=datetime.now(UTC),
        retry_after_s=retry_after_s,
    )
    with pytest.raises(APIError) as raised:
        raise_for_failure(failed)
    return raised.value


def _headers(exc: APIError, path: str = FACES[0]) -> tuple[int, dict[str, str]]:
    request = Request({"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""})
    response = error_response(request, exc)
    return response.status_code, dict(response.headers)


@pytest.mark.parametrize("path", FACES)
def test_a_provider_key_that_is_wrong_is_not_sent_again_on_any_face(path: str) -> None:
    status, headers = _headers(_failure("provider_auth"), path)
    assert (status, headers["x-should-retry"]) == (502, "false")


@pytest.mark.parametrize("path", FACES)
def test_a_provider_account_out_of_credit_is_not_sent_again_on_any_face(path: str) -> None:
    """OpenAI's `insufficient_quota` (and Anthropic's, Gemini's equivalents): a 502 of its own, not a 503
    `provider_rate_limited` that the SDKs retry and clients wait out."""
    failure = _failure("provider_quota_exhausted")
    status, headers = _headers(failure, path)
    assert (status, headers["x-should-retry"], failure.code) == (502, "false", "provider_quota_exhausted")


@pytest.mark.parametrize(
    ("code", "status", "said"),
    [
        ("provider_timeout", 502, None),  # the provider may answer in time next time
        ("provider_network", 502, None),
        ("provider_bad_response", 502, None),  # garbage once is not garbage always
        ("provider_overloaded", 503, None),  # no Retry-After: the status says it (the SDKs retry a 503)
        ("provider_circuit_open", 503, None),
        ("no_provider_available", 503, None),
        ("executor_stopping", 502, "true"),  # a restart: another executor takes it
        ("never_settled", 502, "false"),  # it took a service down at each delivery: it would again
        ("task_expired", 504, None),  # queued past its bound, not run: a timeout's status
        ("provider_error", 502, None),
    ],
)
def test_each_task_failure_says_whether_a_retry_can_pass(code: str, status: int, said: str | None) -> None:
    got, headers = _headers(_failure(code))
    assert (got, headers.get("x-should-retry")) == (status, said)


@pytest.mark.parametrize("code", ["provider_overloaded", "provider_rate_limited", "provider_circuit_open"])
def test_a_busy_failure_with_a_retry_after_says_a_retry_will_pass(code: str) -> None:
    status, headers = _headers(_failure(code, retry_after_s=2.5))
    assert (status, headers["retry-after"], headers["x-should-retry"]) == (503, "3", "true")
    status, headers = _headers(_failure(code, retry_after_s=2.5), "/v1/messages")
    assert headers["x-should-retry"] == "true" and status in (503, 529)


@pytest.mark.parametrize(
    "code", ["provider_bad_request", "provider_content_policy", "provider_context_too_long"]
)
def test_a_request_the_provider_refused_as_invalid_is_a_400_the_sdks_do_not_retry(code: str) -> None:
    status, headers = _headers(_failure(code))
    assert status == 400 and "x-should-retry" not in headers


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (FilesFull("full"), "false"),  # until files are deleted
        (OrganisationFilesFull("full"), "false"),
        (FileUnreadable("damaged"), "false"),
        (Conflict("an organisation named 'acme' exists", retry=False), "false"),
        (RateLimited("too large for the whole limit", retry=False), "false"),
        (GatewayStopping(), "true"),
        (RateLimited("slow down", headers={"retry-after": "3"}), None),
        (APIError("internal error"), None),  # a bug or a blip: unknown, the status decides
    ],
)
def test_the_gateways_own_errors(exc: APIError, said: str | None) -> None:
    _, headers = _headers(exc)
    assert headers.get("x-should-retry") == said


def test_an_idempotency_key_sent_with_another_body_is_not_retried() -> None:
    now = datetime.now(UTC)
    state = TaskState(
        id="t1", tenant_id="acme", status="queued", model="auto", created_at=now, updated_at=now
    )
    state.request_sha256 = "a" * 64
    with pytest.raises(Conflict) as refused:
        replayed(state, BodyDigest("b" * 64))
    _, headers = _headers(refused.value, "/v1/tasks")
    assert (refused.value.status, headers["x-should-retry"]) == (409, "false")


def test_a_wait_longer_than_the_sdks_take_says_false_not_a_retry_that_sleeps_through_it() -> None:
    """anthropic 2.12.0 sleeps whatever Retry-After says (`_calculate_retry_timeout`: min(retry_after,
    4_294_967)) and the OpenAI SDK ignores one over a minute and retries within seconds into the same
    refusal: a refusal that passes only in hours (a day's token limit, a provider's long Retry-After) says
    `false` and leaves the wait to the client; one that passes within a minute is still left to the SDKs."""
    day = Check("user", "tokens", "tok.user.u.1", 1_000, 50, 86_400.0)
    _, headers = _headers(_refusal(day, 990, now=3_600.0, headers={}))
    assert int(headers["retry-after"]) > 60 and headers["x-should-retry"] == "false"
    minute = Check("user", "requests", "req.user.u.1", 10, 1, 120.0)
    _, headers = _headers(_refusal(minute, 10, now=90.0, headers={}))
    assert headers["retry-after"] == "30" and "x-should-retry" not in headers
    _, headers = _headers(_failure("provider_rate_limited", retry_after_s=3_600))
    assert (headers["retry-after"], headers["x-should-retry"]) == ("3600", "false")
    _, headers = _headers(_failure("provider_rate_limited", retry_after_s=20))
    assert (headers["retry-after"], headers["x-should-retry"]) == ("20", "true")


def test_a_task_the_pipeline_refused_as_no_organisation_is_403_and_not_retried() -> None:
    """An organisation erased while its request ran: the pipeline refuses its task (`unknown_tenant`);
    the client gets 403 with that code (a retry gets the same), not 502 as an upstream failure."""
    status, headers = _headers(_failure("unknown_tenant"))
    assert status == 403
    assert headers.get("x-should-retry") != "true"


def test_a_task_whose_budget_its_cut_run_spent_is_the_budgets_refusal() -> None:
    """A task redone after its executor's stop whose cut run spent its hard budget's reservation is not
    sent again (`budget_exceeded`): 429 as the budget's own refusal, never sent again by the SDKs."""
    error = _failure("budget_exceeded")
    assert (error.status, error.type, error.code, error.retry) == (
        429,
        "insufficient_quota",
        "budget_exceeded",
        False,
    )
