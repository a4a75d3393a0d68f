"""One error model for every endpoint, shaped as OpenAI's so SDKs surface it:

    {"error": {"message": "...", "type": "invalid_request_error", "param": null, "code": "model_not_found",
               "request_id": "req_..."}}

with the same request id in the `x-request-id` header. Clients never see a stack trace.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import nats.errors
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from switchyard.common import db
from switchyard.gateway.errors_faces import RETRY_INFO, gemini_error, speaks_anthropic, speaks_google

log = logging.getLogger(__name__)


class APIError(Exception):
    status = 500
    type = "api_error"
    code = "internal_error"
    details: dict[str, Any] | None = None  # Anthropic's `error.details` (the Anthropic face's errors only)
    # Whether the same request, sent again, can succeed: said in `x-should-retry` (`retry_header`); None
    # leaves it to the status, as the SDKs' own rule does.
    retry: bool | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if retry is not None:
            self.retry = retry
        self.param = param
        self.headers = headers or {}

    @property
    def openai_code(self) -> str | None:
        """The `code` an OpenAI-shaped error body says: ours, but null where OpenAI says none for the same
        refusal (`UnansweredToolCalls`); the logs and the other faces keep ours."""
        return self.code


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class UnansweredToolCalls(InvalidRequest):
    """An assistant message's tool calls not each answered by the `tool` messages right after it: OpenAI
    refuses these with `code: null` (its bodies as quoted in public reports: `'param':
    'messages.[2].role', 'code': None`); our code, `invalid_value`, stays in the logs."""

    code = "invalid_value"

    @property
    def openai_code(self) -> str | None:
        return None


class ProviderContextTooLong(InvalidRequest):
    """A provider refused the prompt as too long for its model's context window, in its own words; said
    as OpenAI says it (`context_length_exceeded`, on which LangChain raises ContextOverflowError), and on
    the Anthropic face in Anthropic's words (`anthropic_wording`)."""

    code = "context_length_exceeded"


class RequestTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class BusPayloadExceeded(RequestTooLarge):
    """A request whose task is larger than one message on the bus carries (its `max_payload`, less what the
    pipeline adds to the task on its way): refused before it is admitted or published, so nothing ran."""

    code = "bus_max_payload_exceeded"


class GuardrailRefused(APIError):
    """A guardrail refused the prompt: 400 (injection, PII) or 413 (size), with the guardrail's code."""

    status = 400
    type = "invalid_request_error"
    code = "guardrail_refused"


class AuthenticationFailed(APIError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(APIError):
    status = 403
    type = "permission_error"
    code = "insufficient_permissions"


class Conflict(APIError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class RateLimited(APIError):
    """429 as OpenAI sends it: type `requests` or `tokens`, code `rate_limit_exceeded`, with Retry-After."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, type_: str = "requests", **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.type = type_


class ModelNotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class UpstreamFailed(APIError):
    status = 502
    type = "api_error"
    code = "upstream_failed"


class ServiceUnavailable(APIError):
    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


class GatewayStopping(ServiceUnavailable):
    """The gateway stopped (a restart) before the request's answer came: retry at once (another replica
    answers; the OpenAI and Anthropic SDKs retry a 503 by themselves)."""

    code = "gateway_stopping"
    retry = True

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "the gateway stopped (a restart) before this request's answer came; any task it started was "
            "cancelled: send the request again",
            headers={"Retry-After": "1"},
        )


class GatewayBusy(ServiceUnavailable):
    """The replica is taking in as many bytes of request bodies as it may at once (`intake`): send the
    request again (the OpenAI and Anthropic SDKs retry a 503 by themselves)."""

    code = "gateway_busy"
    retry = True

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class TaskTimeout(APIError):
    status = 504
    type = "timeout"
    code = "task_timeout"


class ClientClosedRequest(APIError):
    """The client went away before its answer: nobody reads this response (nginx's 499), but the access
    log, the metrics and the trace say what happened; the task was cancelled on the bus."""

    status = 499
    type = "api_error"
    code = "client_closed_request"


# The longest Retry-After the SDKs' retries are sent for: the OpenAI SDK honours one up to a minute (longer,
# it retries within seconds into the same refusal); anthropic 2.12.0 sleeps whatever it says, inside the call.
SDK_WAIT_S = 60


def shown(value: object, limit: int = 80) -> str:
    """A client's value quoted in a message: at most `limit` characters of it (a body's string of megabytes
    is not sent back, nor logged, whole)."""
    return repr(str(value)[:limit])


def retry_header(exc: APIError) -> dict[str, str]:
    """`x-should-retry` as the OpenAI and Anthropic SDKs read it: before their own rule (`_should_retry` in
    their base clients, Python and JS alike: 408, 409, 429 and >= 500 are sent again, twice by default),
    `false` stops them sending again a request that can only get the same answer (a provider key that is
    wrong, a store that is full, a budget that does not renew in time), `true` says our Retry-After holds.
    Nothing when the error does not know (`retry` None): the status decides, as the SDKs' own rule. A
    Retry-After longer than SDK_WAIT_S (a day's token limit, a provider's long one) says `false` whatever
    `retry` is: the client, not the SDK inside the call, waits that long (`retry` itself, which batch lines
    read, is unchanged)."""
    retry = exc.retry
    after = exc.headers.get("retry-after", exc.headers.get("Retry-After"))
    if retry is not False and after is not None and after.isdigit() and int(after) > SDK_WAIT_S:
        retry = False
    return {} if retry is None else {"x-should-retry": "true" if retry else "false"}


def error_body(*, message: str, type_: str, code: str | None, param: str | None, request_id: str) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code, "request_id": request_id}}
    )


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "") or "req_unknown"


# Anthropic's error types by status, for the Anthropic face (`anthropic_face`), whose clients read
# `{"type": "error", "error": {"type", "message"}}`; our `code`, `param` and `request_id` ride along.
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


# Every candidate model was at capacity: Anthropic's 529 `overloaded_error` (the SDKs' OverloadedError).
ANTHROPIC_OVERLOADED = ("provider_overloaded", "provider_rate_limited")
# The router's message when no model's context window holds the prompt and max_tokens, or the named model's
# not the prompt.
_CONTEXT = re.compile(
    r"the prompt \(about (?P<prompt>\d+) tokens\) (?:and max_tokens \((?P<max_tokens>\d+)\) exceed the "
    r"context window of every available model \(the largest, .+?, takes (?P<limit>\d+) tokens\)|exceeds "
    r"the context window of the model .+? \((?P<window>\d+) tokens\))"
)


# Providers' words for a prompt too long for the context window: (prompt, limit) or, with the reply's
# tokens, (prompt, max_tokens, limit), as named groups.
_PROVIDER_CONTEXT = (
    re.compile(
        r"maximum context length is (?P<limit>\d+) tokens\. "
        r"However, your messages resulted in (?P<prompt>\d+)"
    ),
    re.compile(  # OpenAI with a completion's tokens, vLLM
        r"maximum context length is (?P<limit>\d+) tokens\. However, you requested \d+ tokens "
        r"\((?P<prompt>\d+) in the messages, (?P<max_tokens>\d+) in the completion\)"
    ),
    re.compile(r"Requested tokens \((?P<prompt>\d+)\) exceed context window of (?P<limit>\d+)"),  # llama.cpp
    re.compile(r"prompt is too long: (?P<prompt>\d+) tokens > (?P<limit>\d+) maximum"),  # Anthropic
    re.compile(  # Gemini
        r"input token count \((?P<prompt>\d+)\) exceeds the maximum number of tokens allowed "
        r"\((?P<limit>\d+)\)"
    ),
)


def anthropic_wording(exc: APIError) -> tuple[int, str]:
    """The status and message the Anthropic face answers `exc` with: 529 when every model was busy, and
    a context window too small in Anthropic's words (`prompt is too long: N tokens > M maximum`, or
    `input length and `max_tokens` exceed context limit: N + K > M, ...`), which clients act on (Claude
    Code compacts its conversation, or retries with a smaller max_tokens); our words follow. A provider's
    refusal is read from its words where they give the numbers, else said as `prompt is too long (...)`."""
    if exc.code in ANTHROPIC_OVERLOADED:
        return 529, exc.message
    if isinstance(exc, ProviderContextTooLong):
        found = next((m for p in _PROVIDER_CONTEXT if (m := p.search(exc.message))), None)
        if found is None:
            return exc.status, f"prompt is too long ({exc.message})"
        numbers = found.groupdict()
        max_tokens = numbers.get("max_tokens")
        words = _too_long(int(numbers["prompt"]), int(max_tokens or 0), int(numbers["limit"]), exc.message)
        return exc.status, words
    found = _CONTEXT.search(exc.message) if exc.code == "context_length_exceeded" else None
    if found is None:
        return exc.status, exc.message
    numbers = found.groupdict()  # the window: every model's largest, or the named model's
    limit = int(numbers["limit"] or numbers["window"])
    return exc.status, _too_long(int(numbers["prompt"]), int(numbers["max_tokens"] or 0), limit, exc.message)


def _too_long(prompt: int, max_tokens: int, limit: int, ours: str) -> str:
    """Anthropic's words for a prompt (and its reply's `max_tokens`) over the context window's `limit`."""
    if prompt > limit or not max_tokens:
        return f"prompt is too long: {prompt} tokens > {limit} maximum ({ours})"
    return (
        f"input length and `max_tokens` exceed context limit: {prompt} + {max_tokens} > {limit}, decrease "
        f"input length or `max_tokens` and try again ({ours})"
    )


def error_response(request: Request, exc: APIError) -> Response:
    rid = request_id_of(request)
    status = exc.status
    if speaks_anthropic(request):
        status, message = anthropic_wording(exc)
        error = {
            # other 4xx are `invalid_request_error`, as Anthropic's errors page says of its own
            "type": ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error"),
            "message": message,
            "code": exc.code,
            "param": exc.param,
            "request_id": rid,
            **({"details": exc.details} if exc.details else {}),
        }
        body = orjson.dumps({"type": "error", "error": error, "request_id": rid})
    elif speaks_google(request):
        google = gemini_error(
            status=status, message=exc.message, code=exc.code, type_=exc.type, param=exc.param, request_id=rid
        )
        after = exc.headers.get("retry-after", exc.headers.get("Retry-After"))
        if after is not None and after.isdigit():  # Google's clients wait by this detail, not the header
            google["details"].append({"@type": RETRY_INFO, "retryDelay": f"{after}s"})
        body = orjson.dumps({"error": google})
    else:
        body = error_body(
            message=exc.message, type_=exc.type, code=exc.openai_code, param=exc.param, request_id=rid
        )
    headers = {"x-request-id": rid, **retry_header(exc), **exc.headers}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


# Where a validation error's location names a union member pydantic tried (`stop.str`,
# `tool_choice.literal['none','auto','required']`, `content.list[TextBlock]`) rather than a field or index.
_FIELD = re.compile(r"[a-z_][a-z0-9_]*")
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


GEMINI_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # Gemini's field names are camelCase


def invalid_fields(errors: Sequence[Any], *, field: re.Pattern[str] = _FIELD) -> InvalidRequest:
    """The first of a body's validation errors (pydantic's `errors()`) as a 400 naming the field:
    `missing_field` when it is absent, `invalid_type` when it is of the wrong JSON type (OpenAI's code for
    `"max_tokens": "5"`), `invalid_value` otherwise. The path keeps the names `field` matches (pydantic
    adds names of its own for the members of a union), and list indexes."""
    err: dict[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid", "type": "value_error"}
    if err["type"] == "json_invalid":  # FastAPI's: the body is not JSON (its loc is a character offset)
        problem = (err.get("ctx") or {}).get("error") or err["msg"]
        return InvalidRequest(f"Request body is not valid JSON: {problem}", code="invalid_json")
    loc = list(err["loc"])
    if loc[:1] in (["body"], ["query"], ["path"]):  # FastAPI's prefixes: OpenAI names the field alone
        loc = loc[1:]
    param = ".".join(
        str(p) for p in loc if isinstance(p, int) or (field.fullmatch(p) and p not in _TYPE_TAGS)
    )
    code = "invalid_value"
    if err["type"] == "missing":
        code = "missing_field"
    elif err["type"].endswith("_type"):  # int_type, bool_type, string_type, list_type, ...
        code = "invalid_type"
    message = str(err["msg"]).removeprefix("Value error, ")  # pydantic's words before our validators' own
    return InvalidRequest(f"{param or 'body'}: {message}", code=code, param=param or None)


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        field = GEMINI_FIELD if speaks_google(request) else _FIELD  # Gemini's query names: `pageSize`
        return error_response(request, invalid_fields(exc.errors(), field=field))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            path = request.url.path
            hint = (
                f" (paths take no trailing slash: {path.rstrip('/')})"
                if len(path) > 1 and path[-1] == "/"
                else ""
            )
            return error_response(request, NotFound(f"no route {request.method} {path}{hint}"))
        if exc.status_code == 405:  # the client's mistake; `Allow` (Starlette's) names what the route takes
            wrong = InvalidRequest(
                f"method {request.method} not allowed",
                status=405,
                code="method_not_allowed",
                headers=dict(exc.headers or {}),
            )
            return error_response(request, wrong)
        return error_response(request, APIError(str(exc.detail), status=exc.status_code, code="http_error"))

    @app.exception_handler(nats.errors.Error)
    async def _bus(request: Request, exc: nats.errors.Error) -> Response:
        if isinstance(exc, nats.errors.MaxPayloadError):  # what a retry would send again: not the bus's state
            log.warning("a message over the bus's max_payload on %s %s", request.method, request.url.path)
            return error_response(
                request,
                BusPayloadExceeded(
                    "the request needs a message larger than the message bus carries (its max_payload); "
                    "SWITCHYARD_MAX_BODY_BYTES should be below that. Send less"
                ),
            )
        # The bus is reconnecting or JetStream is electing a leader (a node restarted): nothing was
        # accepted, and a retry in a moment will be.
        log.warning("bus unavailable on %s %s: %r", request.method, request.url.path, exc)
        return error_response(
            request,
            ServiceUnavailable(
                "the message bus is not accepting requests right now; retry shortly",
                code="bus_unavailable",
                headers={"retry-after": "1"},
                retry=True,
            ),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return unexpected(request, exc)


def unexpected(request: Request, exc: BaseException | None = None) -> Response:
    """The 500 of an error nothing expected (a bug), logged with its traceback: the client gets no more of
    it than the request id that finds it in the logs. `middleware.RequestContext` answers it before
    Starlette's last resort would, which re-raises after answering (uvicorn then closes the connection).
    The database out of reach (restarting, failing over, out of connections) is no bug: a 503 the SDKs
    retry, logged in one line (any view, dependency or middleware may be the first to need it)."""
    if exc is not None and db.unreachable(exc):
        path = request.url.path
        log.warning("database unavailable on %s %s: %s: %s", request.method, path, type(exc).__name__, exc)
        return error_response(
            request,
            ServiceUnavailable(
                "the database is not accepting requests right now; retry shortly",
                code="database_unavailable",
                headers={"retry-after": "1"},
                retry=True,
            ),
        )
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, APIError("internal error; the request id identifies it in our logs"))
