"""Gemini's generateContent on the wire: the request (contents with `user`/`model` roles, the system
instruction, generationConfig, function declarations), the response (candidates, finish reasons, usage
metadata, prompt feedback) and the error bodies (`{"error": {"code", "message", "status", "details"}}`)."""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from switchyard.common import documents
from switchyard.common.errors import ProviderError
from switchyard.common.events import (
    ChatMessage,
    Choice,
    FunctionCall,
    Reasoning,
    TokenLogprob,
    ToolCall,
    TopLogprob,
    Usage,
)
from switchyard.executor.providers.base import (
    ProviderCall,
    Reply,
    estimated_usage,
    reply_of,
    spoken,
    unsigned,
)
from switchyard.executor.providers.errors import ErrorKind, kind_for_status, provider_error
from switchyard.executor.providers.http import finite, parse_json, retry_after
from switchyard.executor.providers.tools import (
    arguments_of,
    arguments_text,
    failed,
    forced_function,
    function_names,
    result_value,
)
from switchyard.executor.tool_state import text_id

# Gemini's finish reasons in OpenAI's terms. The safety family ends an answer the provider blocked.
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "stop",
    "OTHER": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
}
_STATUS_KINDS: dict[str, ErrorKind] = {
    "INVALID_ARGUMENT": "bad_request",
    "FAILED_PRECONDITION": "bad_request",
    "OUT_OF_RANGE": "bad_request",
    "NOT_FOUND": "bad_request",
    "UNAUTHENTICATED": "auth",
    "PERMISSION_DENIED": "auth",
    "RESOURCE_EXHAUSTED": "rate_limited",
    "INTERNAL": "overloaded",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "timeout",
}
_AUTH_REASONS = {"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED"}


def model_path(model: str, *, api_version: str, stream: bool) -> str:
    name = model.removeprefix("models/")
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{api_version}/models/{name}:{method}"


# Gemini 3 and later sign their function calls (`thoughtSignature` on the call's part: its reasoning,
# encrypted) and require the signature back with the call (else 400 "Function call is missing a
# thought_signature"). Clients send tool calls in OpenAI's or Anthropic's shape, which has no place for it,
# so a reply's signatures go to the executor by tool call id (`Reply.carry`, under SIGNATURE) and come
# back as `ProviderCall.carried`; a call whose signature is not known (from another provider, or older
# than the executor keeps them) gets Google's documented sentinel, which passes the check without the
# reasoning it would have restored.
# Gemini 3 signs an answer's text too (on its last part) when it thought before it: not required back, but
# the reasoning it restores is lost without it. It is kept by a hash of the text (`tool_state.text_id`)
# and goes back on the text of the assistant turn that repeats it.
SKIP_SIGNATURE = "skip_thought_signature_validator"
SIGNATURE = "gemini_thought_signature"
UNSIGNED_GENERATIONS = ("gemini-1", "gemini-2")  # earlier models neither return nor require signatures


def request_body(call: ProviderCall) -> dict[str, Any]:
    signed = not call.model.removeprefix("models/").startswith(UNSIGNED_GENERATIONS)
    system, contents = split_messages(call.messages, signed=signed, carried=call.carried)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    config = generation_config(call)
    if config:
        body["generationConfig"] = config
    if call.tools:
        body["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": t.function.name,
                        "description": t.function.description or "",
                        **({"parametersJsonSchema": t.function.parameters} if t.function.parameters else {}),
                    }
                    for t in call.tools
                ]
            }
        ]
        mode = function_calling_config(call.tool_choice)
        if mode is not None:
            body["toolConfig"] = {"functionCallingConfig": mode}
    return body


GEMINI_MAX_THINKING = 24576  # Gemini 2.5 Flash's largest thinking budget (Pro's: 32,768)


def generation_config(call: ProviderCall) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if call.max_tokens is not None:
        config["maxOutputTokens"] = call.max_tokens
    if call.temperature is not None:
        config["temperature"] = call.temperature  # 0-2, as OpenAI's
    if call.top_p is not None:
        config["topP"] = call.top_p
    if call.stop:
        config["stopSequences"] = list(call.stop)
    if call.seed is not None:
        config["seed"] = call.seed
    if call.n > 1:
        config["candidateCount"] = call.n
    if call.presence_penalty is not None:
        config["presencePenalty"] = call.presence_penalty
    if call.frequency_penalty is not None:
        config["frequencyPenalty"] = call.frequency_penalty
    if call.reasoning is not None:  # Gemini thinks by default (at a level it picks): this sets one
        config["thinkingConfig"] = thinking_config(call.model, call.reasoning)
    if call.logprobs:
        config["responseLogprobs"] = True
        if call.top_logprobs:  # alternatives per token: Gemini takes 1-20 (0 is OpenAI's "none")
            config["logprobs"] = call.top_logprobs
    if call.json_format() is not None:
        config["responseMimeType"] = "application/json"
        schema = call.json_schema()
        if schema is not None:
            config["responseJsonSchema"] = schema
    return config


def thinking_config(model: str, reasoning: Reasoning) -> dict[str, Any]:
    """Gemini 3 and later take a thinking level (`thinkingLevel`, which replaced the budget): Flash and
    Flash-Lite minimal, low, medium, high; Pro low and high. Gemini 2.5, and names that are not a Gemini
    generation (a proxy's), take a budget. With thinking asked for, its summaries are too."""
    # Thought summaries are asked for whenever thinking is: they come back as the answer's thinking.
    shown = {"includeThoughts": True} if reasoning.thinks() else {}
    name = model.removeprefix("models/")
    if not name.startswith("gemini-") or name.startswith(UNSIGNED_GENERATIONS):
        return {"thinkingBudget": min(reasoning.budget(), GEMINI_MAX_THINKING), **shown}
    level = reasoning.level()
    if "-pro" in name:
        return {"thinkingLevel": "high" if level in ("medium", "high", "xhigh", "max") else "low", **shown}
    steps = {"none": "minimal", "xhigh": "high", "max": "high"}
    return {"thinkingLevel": steps.get(level, level), **shown}


def function_calling_config(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    name = forced_function(choice)
    if name is not None:
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    return {"mode": modes[choice]} if isinstance(choice, str) and choice in modes else None


def split_messages(
    messages: Sequence[ChatMessage],
    *,
    signed: bool = False,
    carried: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """System and developer messages become the system instruction; `assistant` is the `model` role; a
    tool result is a `functionResponse` part of a user turn, named by the function that was called.
    Consecutive turns of one role are merged into one content, as the API expects turns to alternate.
    With `signed` (Gemini 3 and later), each function call goes back with the thought signature Gemini
    gave it (`carried`, by tool call id); an assistant turn none of whose calls has one gets the
    `SKIP_SIGNATURE` sentinel on its first call (of parallel calls, Gemini signs the first). A conversation
    of instructions only (OpenAI answers it) goes as the user's turn: Gemini refuses a request without
    contents."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names = function_names(messages)
    for message in messages:
        if message.role in ("system", "developer"):
            system.append(message.text())
            continue
        role = "model" if message.role == "assistant" else "user"
        if message.role == "tool":
            name = names.get(message.tool_call_id or "", message.name or "tool")
            response = result_value(message)
            if failed(message):  # a failed call's details under `error`, as Gemini's API reads them
                response = {"error": response}
            elif not isinstance(response, dict):
                response = {"result": response}
            parts: list[dict[str, Any]] = [{"functionResponse": {"name": name, "response": response}}]
            parts += [p for p in _parts(message) if "text" not in p]  # its images, beside the response
        else:
            parts = _parts(message)
            if signed and message.role == "assistant":
                _sign_text(parts, message.text(), carried or {})
            calls: list[dict[str, Any]] = []
            for c in message.tool_calls or []:
                call: dict[str, Any] = {"functionCall": {"name": c.function.name, "args": arguments_of(c)}}
                signature = (carried or {}).get(c.id, {}).get(SIGNATURE) if signed else None
                if signature:
                    call["thoughtSignature"] = signature
                calls.append(call)
            if calls and signed and not any("thoughtSignature" in c for c in calls):
                calls[0]["thoughtSignature"] = SKIP_SIGNATURE
            parts += calls
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    instructions = "\n\n".join(s for s in system if s)
    if not contents and instructions:  # instructions only: Gemini refuses a request without contents
        return "", [{"role": "user", "parts": [{"text": instructions}]}]
    return instructions, contents


def _sign_text(parts: list[dict[str, Any]], text: str, carried: Mapping[str, Mapping[str, str]]) -> None:
    """An assistant turn's text goes back with the signature Gemini gave it, on its last text part."""
    signature = carried.get(text_id(text), {}).get(SIGNATURE) if text else None
    texts = [p for p in parts if "text" in p]
    if signature and texts:
        texts[-1]["thoughtSignature"] = signature


def text_signatures(text: str, signature: str | None) -> dict[str, dict[str, str]]:
    """What a reply carries for its text's signature (`Reply.carry`), by `text_id`."""
    return {text_id(text): {SIGNATURE: signature}} if text and signature else {}


def _parts(message: ChatMessage) -> list[dict[str, Any]]:
    if message.content is None:
        return []
    if isinstance(message.content, str):
        return [{"text": message.content}] if message.content else []
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if part.get("type") == "text":
            parts.append({"text": str(part.get("text", ""))})
        elif part.get("type") == "image_url":
            parts.append(_image(str((part.get("image_url") or {}).get("url", ""))))
        elif part.get("type") == "file":  # a PDF: Gemini reads its bytes inline (its filename has no place)
            media, data = documents.media_and_data(part)
            parts.append({"inlineData": {"mimeType": media, "data": data}})
    return parts


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        media, _, data = url[5:].partition(";base64,")
        return {"inlineData": {"mimeType": media, "data": data}}
    media = mimetypes.guess_type(url)[0] or "image/jpeg"
    return {"fileData": {"mimeType": media, "fileUri": url}}


def usage_of(data: Any) -> Usage | None:
    """Thinking tokens (`thoughtsTokenCount`, apart from `candidatesTokenCount`) are output the caller
    pays for: counted in `completion_tokens` and as its `reasoning_tokens` (0 when absent: proto3 JSON
    leaves zeros out); tool-use prompt tokens are input."""
    if not isinstance(data, dict):
        return None
    prompt = int(data.get("promptTokenCount") or 0) + int(data.get("toolUsePromptTokenCount") or 0)
    thoughts = int(data.get("thoughtsTokenCount") or 0)
    completion = int(data.get("candidatesTokenCount") or 0) + thoughts
    read = int(data.get("cachedContentTokenCount") or 0)  # of promptTokenCount: implicit or explicit cache
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cache_read_tokens=min(read, prompt),
        reasoning_tokens=thoughts,
    )


class Candidate:
    """What one response (or one streamed chunk) says about its first candidate (or the one at
    `position`, of a call that asked for several)."""

    def __init__(self, data: Any, position: int = 0) -> None:
        if not isinstance(data, dict):
            raise provider_error("bad_response", f"a response that is not an object: {str(data)[:200]}")
        if "error" in data:
            raise error_from_data(500, data)
        blocked = (data.get("promptFeedback") or {}).get("blockReason")
        candidates = data.get("candidates") or []
        if blocked and not candidates:
            raise provider_error("content_policy", f"gemini blocked the prompt ({blocked})")
        ordered = sorted(
            (c for c in candidates if isinstance(c, dict)), key=lambda c: int(c.get("index") or 0)
        )
        first = ordered[position] if position < len(ordered) else {}
        self._data = data
        self.count = len(ordered)
        self.index = int(first.get("index") or 0)  # Google's JSON leaves out 0, the first's
        parts = (first.get("content") or {}).get("parts") or []
        texts = [p for p in parts if isinstance(p, dict) and "text" in p]
        # the text's signature: on a text part of the answer (not a thought), or a part of its own
        signed = [
            p["thoughtSignature"]
            for p in parts
            if isinstance(p, dict)
            and isinstance(p.get("thoughtSignature"), str)
            and p["thoughtSignature"]
            and not p.get("functionCall")
            and not p.get("thought")
        ]
        self.text_signature: str | None = signed[-1] if signed else None
        self.text = "".join(str(p["text"]) for p in texts if not p.get("thought"))
        self.thought = "".join(str(p["text"]) for p in texts if p.get("thought"))  # the thought summary
        self.calls = [p for p in parts if isinstance(p, dict) and p.get("functionCall")]  # with signatures
        self._logprobs = first.get("logprobsResult")
        self.finish: str | None = first.get("finishReason")
        self.model: str | None = data.get("modelVersion")
        self.usage = usage_of(data.get("usageMetadata"))

    def all(self) -> list[Candidate]:
        """This (the first) and every other candidate of its response, each with its own `index`."""
        return [self, *(Candidate(self._data, position) for position in range(1, self.count))]

    def logprobs(self) -> tuple[TokenLogprob, ...]:
        """Its tokens (of the whole answer, or of a streamed chunk) with their log probabilities, from
        `logprobsResult`: `chosenCandidates[i]` is step i's token, `topCandidates[i]` its alternatives."""
        result = self._logprobs
        if result is None:
            return ()
        chosen = (result.get("chosenCandidates") or []) if isinstance(result, dict) else None
        steps = (result.get("topCandidates") or []) if isinstance(result, dict) else None
        if not isinstance(chosen, list) or not isinstance(steps, list):
            raise provider_error("bad_response", f"a malformed logprobsResult: {str(result)[:200]}")
        # checked by `_step`, and constructed without pydantic's validation, as OpenAI's (`openai/wire.py`)
        out: list[TokenLogprob] = []
        for i, step in enumerate(chosen):
            token, logprob = _step(step)
            at = steps[i] if i < len(steps) else {}
            alternatives = (at.get("candidates") or []) if isinstance(at, dict) else None
            if not isinstance(alternatives, list):
                raise provider_error("bad_response", f"topCandidates[{i}] is malformed: {str(at)[:200]}")
            top = [TopLogprob.model_construct(token=t, logprob=lp) for t, lp in map(_step, alternatives)]
            out.append(TokenLogprob.model_construct(token=token, logprob=logprob, top_logprobs=top))
        return tuple(out)


def _step(candidate: Any) -> tuple[str, float]:
    """A logprobs candidate's token and log probability. Google's JSON leaves out fields at their default
    (proto3): a token whose log probability is 0 comes without one."""
    if not isinstance(candidate, dict):
        raise provider_error("bad_response", f"a logprobs candidate is not an object: {str(candidate)[:200]}")
    token, logprob = candidate.get("token", ""), candidate.get("logProbability", 0.0)
    if not isinstance(token, str):
        raise provider_error("bad_response", f"a logprobs candidate without a token: {str(candidate)[:200]}")
    if not finite(logprob):
        raise provider_error("bad_response", f"a logprobs candidate's logProbability: {str(candidate)[:200]}")
    return token, float(logprob)


def tool_calls_of(parts: Sequence[Any]) -> tuple[tuple[ToolCall, ...], dict[str, dict[str, str]]]:
    """The function calls of `functionCall` parts, and their thought signatures by tool call id (for
    `Reply.carry`). Gemini gives its calls no id: each gets a new one, unique across the conversation,
    which is what its signature is kept under."""
    calls: list[ToolCall] = []
    carry: dict[str, dict[str, str]] = {}
    for part in parts:
        call = part.get("functionCall")
        if not isinstance(call, dict) or not call.get("name"):
            raise provider_error("bad_response", f"a functionCall without a name: {str(call)[:200]}")
        tool_call = ToolCall(
            id=str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
            function=FunctionCall(name=str(call["name"]), arguments=arguments_text(call.get("args"))),
        )
        calls.append(tool_call)
        if isinstance(part.get("thoughtSignature"), str) and part["thoughtSignature"]:
            carry[tool_call.id] = {SIGNATURE: part["thoughtSignature"]}
    return tuple(calls), carry


def finish_reason(finish: str | None, *, text: str, calls: Sequence[Any]) -> str:
    """OpenAI's finish reason; a safety stop with nothing to show is an error, not an empty answer."""
    if finish == "MALFORMED_FUNCTION_CALL":
        raise provider_error("bad_response", "gemini produced a malformed function call")
    reason = FINISH_REASONS.get(str(finish), "stop") if finish else "stop"
    if reason == "content_filter" and not text and not calls:
        raise provider_error("content_policy", f"gemini blocked the answer ({finish})")
    return "tool_calls" if calls and reason == "stop" else reason


def parse_reply(raw: bytes, call: ProviderCall) -> Reply:
    """The first candidate as the reply; the others (a call that asked for several, `n`) as its
    `other_choices`; `usageMetadata` counts them all."""
    data = parse_json(raw, what="the generateContent response")
    candidate = Candidate(data)
    if candidate.finish is None and not candidate.text and not candidate.calls:
        raise provider_error("bad_response", f"a response without a candidate: {raw[:200]!r}")
    if candidate.count < call.n:
        raise provider_error("bad_response", f"{call.n} candidates asked for, {candidate.count} returned")
    answers: list[Choice] = []
    carry: dict[str, dict[str, str]] = text_signatures(candidate.text, candidate.text_signature)
    for position in range(call.n):
        answer, kept = _answer(candidate if position == 0 else Candidate(data, position), call.logprobs)
        answers.append(answer)
        carry |= kept
    usage = candidate.usage or estimated_usage(call, spoken(answers))
    return reply_of(
        answers,
        model=candidate.model or call.model,
        usage=usage,
        carry=carry,
        usage_estimated=candidate.usage is None,
    )


def _answer(candidate: Candidate, logprobs: bool) -> tuple[Choice, dict[str, dict[str, str]]]:
    """One candidate as an answer (with its tokens' log probabilities, when the call asked for them), and
    its function calls' signatures by tool call id."""
    calls, carry = tool_calls_of(candidate.calls)
    answer = Choice(
        content=candidate.text,
        finish_reason=finish_reason(candidate.finish, text=candidate.text, calls=candidate.calls),
        tool_calls=list(calls) or None,
        thinking=[unsigned(candidate.thought)] if candidate.thought else None,
        logprobs=list(candidate.logprobs()) if logprobs else None,
    )
    return answer, carry


def error_from_body(status: int, raw: bytes, headers: httpx.Headers | None = None) -> ProviderError:
    try:
        data = parse_json(raw, what="the error body")
    except ProviderError:
        data = None
    if isinstance(data, list) and data:  # the JSON-array framing of a non-SSE stream
        data = data[0]
    return error_from_data(status, data, headers, raw=raw)


def error_from_data(
    status: int, data: Any, headers: httpx.Headers | None = None, *, raw: bytes = b""
) -> ProviderError:
    """Maps `{"error": {"code", "message", "status", "details"}}` (google.rpc.Status) to the taxonomy."""
    err = data.get("error") if isinstance(data, dict) else None
    err = err if isinstance(err, dict) else {}
    message = str(err.get("message") or "")
    code = str(err.get("status") or "")
    details = [d for d in err.get("details") or [] if isinstance(d, dict)]
    reasons = {str(d.get("reason")) for d in details if d.get("reason")}
    kind: ErrorKind = _STATUS_KINDS.get(code) or kind_for_status(status)
    lowered = message.lower()
    if reasons & _AUTH_REASONS or "api key not valid" in lowered:
        kind = "auth"
    elif "exceeds the maximum number of tokens" in lowered or "input token count" in lowered:
        kind = "context_too_long"
    elif "safety" in lowered and kind == "bad_request":
        kind = "content_policy"
    elif status == 402 or (kind == "rate_limited" and "credits are depleted" in lowered):
        kind = "quota_exhausted"  # the billing account's prepay credits (402, or a 429 saying so)
    delay = retry_after(headers) if headers is not None else None
    if delay is None:
        delay = _retry_delay(details)
    text = f"gemini {status} {code}: {message or raw[:200].decode('utf-8', 'replace') or 'no error body'}"
    return provider_error(kind, text, retry_after=delay)


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """google.rpc.RetryInfo's `retryDelay`, a protobuf Duration in JSON ("37s", "1.5s")."""
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            value = str(detail.get("retryDelay") or "").removesuffix("s")
            try:
                return max(float(value), 0.0)
            except ValueError:
                return None
    return None
