"""A local server speaking the Gemini API's generateContent protocol, for tests: the response JSON
(candidates, finishReason, usageMetadata, modelVersion), streamGenerateContent as SSE (`alt=sse`; without
it, the JSON-array framing), and Google's error bodies (`{"error": {"code", "message", "status",
"details"}}`). The model name in the URL picks the behaviour, as in `fake_openai`:

    error-400      400 INVALID_ARGUMENT "Request contains an invalid argument."
    error-401      400 INVALID_ARGUMENT with reason API_KEY_INVALID (what Gemini answers a wrong key)
    error-404      404 NOT_FOUND
    error-429      429 RESOURCE_EXHAUSTED with a google.rpc.RetryInfo `retryDelay` (no Retry-After header)
    error-500      500 INTERNAL; error-503 and error-529 503 UNAVAILABLE (Gemini has no 529)
    error-context  400 INVALID_ARGUMENT "The input token count ... exceeds the maximum ..."
    error-policy   200 with `promptFeedback.blockReason: SAFETY` and no candidates (a blocked prompt)
    tool-call      with tools: a functionCall of the first declared function, args {"city": "Paris"}

With `thinkingConfig.includeThoughts`, the answer starts with a thought summary (`thought: true` parts),
and `usageMetadata.thoughtsTokenCount` counts THOUGHT_TOKENS of thinking (more than the summary shows),
apart from `candidatesTokenCount` and within `totalTokenCount`, as Gemini counts them.
As Gemini 3 does, every model but `gemini-1*`/`gemini-2*` signs its function calls (`thoughtSignature`
on the call's part) and checks the current turn's calls when they come back (the model turns after the
last user text): the first call of each such turn must carry a signature this server issued, or Google's
`skip_thought_signature_validator` sentinel; missing is 400 "Function call is missing a
thought_signature", one it never issued 400 "Corrupted thought signature". `signatures` records what
each checked call brought: "issued", "sentinel". A text answer is signed too, on its last part (the
real API does not check those); `text_signatures` records what each model turn's text came back with.
    flaky-<n>, limited-<n>, slow-<seconds>, break, stream-error, garbage, bomb-<MiB>,
    longline-<MiB>, echo-key, context-in-200, html-200, whole-stream: as in fake_openai
    long-<words>        as in fake_openai, cut at generationConfig.maxOutputTokens (finishReason MAX_TOKENS)
    bad-logprobs   asked for logprobs: its first token's `logProbability` is "NaN" (proto3 JSON's NaN)

With `generationConfig.responseLogprobs` each candidate carries `logprobsResult`: its text's tokens
(`fake_logprobs.py`) as `chosenCandidates`, and with `generationConfig.logprobs` (1-20) as many
alternatives per step as `topCandidates`; the whole response's candidate also has `avgLogprobs`. A stream
then sends two tokens a chunk, each chunk's candidate with the steps of its tokens. `logprobs` without
`responseLogprobs`, or outside 0-20, is a 400.

With `generationConfig.candidateCount` > 1 the i-th candidate (from 2) says the first's text and
"(answer i)", with its `index`; a stream sends each response with the next piece of one candidate, a piece
of each in turn, each candidate's last piece with its finishReason.

Requests without the `x-goog-api-key` (or `?key=`) the server was given get the wrong-key answer; a
content role other than `user`/`model`, or no contents, gets 400 INVALID_ARGUMENT, as the real API answers.

`:batchEmbedContents` speaks Gemini's batch embeddings (`fake_embeddings.py`: a vector per text, drawn from
its hash, shortened to `outputDimensionality` without normalising it again; at most 100 requests a batch;
Google's 400s) with the same key check and the `error-*`, `flaky-*`, `limited-*`, `slow-*`, `garbage` and
`break` names, and:

    counted        a reply with `usageMetadata` (the reference documents none)
    staggered-*    the n-th batch of that model waits 0.3/n seconds: batches sent at once end last first
`most_in_flight` records, by model, the most batches the server held at once.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support import fake_embeddings, fake_gemini_names, fake_logprobs
from tests.support.fake_scenarios import (
    RETRY_AFTER_S,
    ConnectionDropped,
    Recorded,
    Scenarios,
    bomb_mib,
    first_line_padded,
    flaky_failures,
    gzip_bomb,
    limited_calls,
    long_answer,
    long_line_mib,
    long_words,
    proxy_page,
    slow_seconds,
    sse,
    words,
)
from tests.support.servers import BackgroundServer

__all__ = ["BackgroundServer", "FakeGemini"]

PROMPT_TOKENS = 9
SENTINEL = "skip_thought_signature_validator"
UNSIGNED = ("gemini-1", "gemini-2")  # models that neither sign their function calls nor check them
ERRORS: dict[str, tuple[int, str, str]] = {
    "400": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "401": (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
    "404": (
        404,
        "NOT_FOUND",
        "models/error-404 is not found for API version v1beta, or is not supported for generateContent.",
    ),
    "429": (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan."),
    "500": (500, "INTERNAL", "An internal error has occurred. Please retry or report."),
    "503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "529": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "context": (
        400,
        "INVALID_ARGUMENT",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
    ),
}


THOUGHT_SUMMARY = ("**Answering briefly**\n\n", "The user greeted me; I reply in kind.")
THOUGHT_TOKENS = 96


def error_body(name: str) -> dict[str, Any]:
    status, code, message = ERRORS[name]
    error: dict[str, Any] = {"code": status, "message": message, "status": code}
    if name == "401":
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
    if name == "429":
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{RETRY_AFTER_S}s"}
        ]
    return {"error": error}


def error_response(name: str) -> Response:
    return JSONResponse(error_body(name), status_code=ERRORS[name][0])


def invalid(message: str) -> Response:
    body = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
    return JSONResponse(body, status_code=400)


def answer_text(body: dict[str, Any]) -> str:
    users = [c for c in body.get("contents", []) if c.get("role", "user") == "user"]
    parts = users[-1].get("parts", []) if users else []
    return "Hello! You said: " + " ".join(str(p["text"]) for p in parts if "text" in p)


class FakeGemini:
    def __init__(self, *, api_key: str = "AIza-test-fake-gemini-key") -> None:
        self.api_key = api_key
        self.scenarios = Scenarios()
        self.issued: dict[str, None] = {}  # thought signatures given out, in order
        self.signatures: list[str] = []  # what each checked function call came back with
        self.text_issued: dict[str, None] = {}  # signatures given out on answers' text (Gemini 3)
        self.text_signatures: list[str] = []  # what each model turn's text came back with
        self.in_flight: Counter[str] = Counter()  # batchEmbedContents requests being answered, by model
        self.most_in_flight: Counter[str] = Counter()
        self.app = Starlette(routes=[Route("/v1beta/models/{target}", self.generate, methods=["POST"])])

    @property
    def requests(self) -> list[Recorded]:
        return self.scenarios.requests

    async def generate(self, request: Request) -> Response:
        model, _, method = request.path_params["target"].partition(":")
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return invalid("Invalid JSON payload received.")
        self.requests.append(Recorded(request.url.path, dict(request.headers), body))
        self.scenarios.calls[model] += 1
        n = self.scenarios.calls[model]
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if key != self.api_key:
            return error_response("401")
        if model == "echo-key":  # a proxy that quotes the request's headers back
            return invalid(f"bad header x-goog-api-key: {key}")
        if method == "batchEmbedContents":
            return await self._embed(model, body, n)
        if method not in ("generateContent", "streamGenerateContent"):
            return JSONResponse({"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}, 404)
        self._text_signed(body)
        problem = self._problem(body) or _logprobs_problem(body) or self._unsigned(model, body)
        if problem:
            return invalid(problem)
        if model.startswith("error-") and model != "error-policy":
            return error_response(model.removeprefix("error-"))
        if model == "context-in-200":  # the error object, with a 200 (a proxy's way)
            return JSONResponse(error_body("context"))
        if model == "html-200":
            return proxy_page()
        if n <= flaky_failures(model):
            return error_response("503")
        if n <= limited_calls(model):
            return error_response("429")
        await asyncio.sleep(slow_seconds(model))
        chunks = self._chunks(model, body)
        answers = int((body.get("generationConfig") or {}).get("candidateCount") or 1)
        if method == "streamGenerateContent" and model != "whole-stream":
            if answers > 1 and chunks[0].get("candidates"):
                chunks = self._interleaved(chunks, answers, _asked_logprobs(body))
            if request.query_params.get("alt") == "sse":
                events = self._sse(model, chunks)
                if long_line_mib(model):
                    events = first_line_padded(events, long_line_mib(model))
                return StreamingResponse(events, media_type="text/event-stream")
            return JSONResponse(chunks)
        if model == "garbage":
            return Response(b"<html>502 Bad Gateway</html>{", media_type="application/json")
        whole = self._whole(chunks)
        if answers > 1 and whole.get("candidates"):
            whole = self._several(whole, answers, _asked_logprobs(body))
        if model == "break":
            return StreamingResponse(_dropping(orjson.dumps(whole)), media_type="application/json")
        if bomb_mib(model):
            return gzip_bomb(whole, bomb_mib(model))
        return JSONResponse(whole)

    async def _embed(self, model: str, body: dict[str, Any], n: int) -> Response:
        """One batchEmbedContents request (the `n`-th of this model)."""
        if model.startswith("error-"):
            return error_response(model.removeprefix("error-"))
        problem = fake_embeddings.gemini_refusal(model, body)
        if problem:
            return invalid(problem)
        if n <= flaky_failures(model):
            return error_response("503")
        if n <= limited_calls(model):
            return error_response("429")
        self.in_flight[model] += 1
        self.most_in_flight[model] = max(self.most_in_flight[model], self.in_flight[model])
        try:
            await asyncio.sleep(0.3 / n if model.startswith("staggered") else slow_seconds(model))
        finally:
            self.in_flight[model] -= 1
        if model == "garbage":
            return Response(b"<html>502 Bad Gateway</html>{", media_type="application/json")
        answer = fake_embeddings.gemini_answer(body, usage=model == "counted")
        if model == "break":
            return StreamingResponse(_dropping(orjson.dumps(answer)), media_type="application/json")
        return JSONResponse(answer)

    def _problem(self, body: dict[str, Any]) -> str | None:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return "* GenerateContentRequest.contents: contents is not specified"
        for i, content in enumerate(contents):
            if content.get("role", "user") not in ("user", "model"):
                return f"Please use a valid role: user, model. (contents[{i}])"
            if not content.get("parts"):
                return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        return fake_gemini_names.name_problem(body)

    def _text_signed(self, body: dict[str, Any]) -> None:
        """Notes what each model turn's text came back with: "issued" (a signature this server gave), "none",
        or "unknown"; the real API does not check these (a missing one costs the restored reasoning)."""
        for content in body.get("contents") or []:
            texts = [p for p in content.get("parts", []) if "text" in p and not p.get("thought")]
            if content.get("role") != "model" or not texts:
                continue
            signature = next((p["thoughtSignature"] for p in texts if "thoughtSignature" in p), None)
            seen = "none" if signature is None else "issued" if signature in self.text_issued else "unknown"
            self.text_signatures.append(seen)

    def _unsigned(self, model: str, body: dict[str, Any]) -> str | None:
        """What Gemini 3 says of the current turn's function calls without a valid thought signature."""
        if model.startswith(UNSIGNED):
            return None
        contents = body.get("contents") or []
        user_texts = [
            i
            for i, c in enumerate(contents)
            if c.get("role", "user") == "user" and any("text" in p for p in c["parts"])
        ]
        for i, content in enumerate(contents[(user_texts[-1] if user_texts else -1) + 1 :]):
            calls = [p for p in content.get("parts", []) if "functionCall" in p]
            if content.get("role") != "model" or not calls:
                continue
            signature = calls[0].get("thoughtSignature")
            if signature == SENTINEL:
                self.signatures.append("sentinel")
            elif signature in self.issued:
                self.signatures.append("issued")
            elif signature is None:
                return f"Function call is missing a thought_signature in functionCall parts. (model turn {i})"
            else:
                return "Corrupted thought signature."
        return None

    def _chunks(self, model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The streamed responses; the whole response is their sum."""
        cut = False
        usage = {
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": 0,
            "totalTokenCount": PROMPT_TOKENS,
        }
        if model == "cached":  # implicit caching: 4 of the prompt's tokens were cache hits
            usage["cachedContentTokenCount"] = 4
        if model == "error-policy":
            feedback = {"blockReason": "SAFETY", "safetyRatings": []}
            return [{"promptFeedback": feedback, "usageMetadata": usage, "modelVersion": model}]
        if model == "tool-call" and body.get("tools"):
            tools = body.get("tools") or [{}]
            name = ((tools[0].get("functionDeclarations") or [{}])[0]).get("name", "unknown")
            call: dict[str, Any] = {"functionCall": {"name": name, "args": {"city": "Paris"}}}
            if not model.startswith(UNSIGNED):
                signature = base64.b64encode(f"sig:{uuid.uuid4().hex}".encode()).decode()
                self.issued[signature] = None
                call["thoughtSignature"] = signature
            parts: list[list[dict[str, Any]]] = [[call]]
        else:
            said, cut = answer_text(body), False
            if long_words(model):  # cut at maxOutputTokens, as Gemini cuts one (finishReason MAX_TOKENS)
                said, cut = long_answer(model, (body.get("generationConfig") or {}).get("maxOutputTokens"))
            parts = [[{"text": w}] for w in _pieces(said, logprobs=_asked_logprobs(body) is not None)]
            if not model.startswith(UNSIGNED):  # Gemini 3 signs its answer's text on its last part
                signature = base64.b64encode(f"text-sig:{uuid.uuid4().hex}".encode()).decode()
                self.text_issued[signature] = None
                parts[-1][0]["thoughtSignature"] = signature
        thinking = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
        if thinking.get("includeThoughts"):  # a thought summary first, in two pieces, as Gemini streams it
            parts = [[{"text": t, "thought": True}] for t in THOUGHT_SUMMARY] + parts
            usage.update(thoughtsTokenCount=THOUGHT_TOKENS, totalTokenCount=PROMPT_TOKENS + THOUGHT_TOKENS)
        top = _asked_logprobs(body)
        told = 0  # the answer's tokens in the chunks before
        count = 0  # the answer's pieces so far (the thought summary's are counted as thoughts)
        out = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": part}, "index": 0}
            if top is not None:
                said = fake_logprobs.tokens(
                    "".join(p["text"] for p in part if "text" in p and not p.get("thought"))
                )
                candidate["logprobsResult"] = _result(model, said, top, first=told)
                told += len(said)
            count += not any(p.get("thought") for p in part)
            if last:
                candidate["finishReason"] = "MAX_TOKENS" if cut else "STOP"
            out.append(
                {
                    "candidates": [candidate],
                    "usageMetadata": {
                        **usage,
                        "candidatesTokenCount": count,
                        "totalTokenCount": usage["totalTokenCount"] + count,
                    },
                    "modelVersion": model,
                    "responseId": f"resp-{model}",
                }
            )
        return out

    def _whole(self, chunks: list[dict[str, Any]]) -> dict[str, Any]:
        whole = orjson.loads(orjson.dumps(chunks[-1]))
        if "candidates" in whole:
            every = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
            thought = "".join(p["text"] for p in every if "text" in p and p.get("thought"))
            text = "".join(p["text"] for p in every if "text" in p and not p.get("thought"))
            signed = [p["thoughtSignature"] for p in every if "text" in p and "thoughtSignature" in p]
            calls = [p for p in every if "functionCall" in p]
            answer = {"text": text, **({"thoughtSignature": signed[-1]} if signed else {})}
            whole["candidates"][0]["content"]["parts"] = (
                ([{"text": thought, "thought": True}] if thought else []) + ([answer] if text else []) + calls
            )
            results = [
                c["candidates"][0]["logprobsResult"] for c in chunks if "logprobsResult" in c["candidates"][0]
            ]
            if results:
                steps = [s for r in results for s in r["chosenCandidates"]]
                merged: dict[str, Any] = {"chosenCandidates": steps}
                if "topCandidates" in results[0]:
                    merged["topCandidates"] = [s for r in results for s in r["topCandidates"]]
                whole["candidates"][0]["logprobsResult"] = merged
                whole["candidates"][0]["avgLogprobs"] = _average(steps)
        return whole

    @staticmethod
    def _several(whole: dict[str, Any], answers: int, top: int | None = None) -> dict[str, Any]:
        """`candidateCount`: the i-th candidate (from 2) says the first's text and "(answer i)", each with
        its `index` (and its tokens' log probabilities, when asked: `top`), listed last first;
        `candidatesTokenCount` counts them all."""
        first = whole["candidates"][0]
        text = "".join(p.get("text", "") for p in first["content"]["parts"] if not p.get("thought"))
        others = []
        for index in range(1, answers):
            said = f"{text} (answer {index + 1})"
            content = {"role": "model", "parts": [{"text": said}]}
            other: dict[str, Any] = {"content": content, "finishReason": "STOP", "index": index}
            if top is not None:
                other["logprobsResult"] = fake_logprobs.gemini_result(fake_logprobs.tokens(said), top)
                other["avgLogprobs"] = _average(other["logprobsResult"]["chosenCandidates"])
            others.append(other)
        usage = whole["usageMetadata"]
        more = sum(len(words(o["content"]["parts"][0]["text"])) for o in others)
        usage["candidatesTokenCount"] += more
        usage["totalTokenCount"] += more
        return {**whole, "candidates": [*reversed(others), first]}

    @staticmethod
    def _interleaved(chunks: list[dict[str, Any]], answers: int, top: int | None) -> list[dict[str, Any]]:
        """`candidateCount` in a stream: the other candidates (worded as `_several` words them) streamed
        beside the first, a piece of each in turn, each response holding the next piece of one candidate
        by its `index` (its last with its finishReason); `usageMetadata` counts the pieces so far, the
        last response all the answers' tokens, as the whole response counts them."""
        text = "".join(
            p["text"] for c in chunks for p in c["candidates"][0]["content"]["parts"] if not p.get("thought")
        )
        streams: list[list[dict[str, Any]]] = [[c["candidates"][0] for c in chunks]]
        for index in range(1, answers):
            said = f"{text} (answer {index + 1})"
            told = 0
            pieces: list[dict[str, Any]] = []
            for piece in _pieces(said, logprobs=top is not None):
                candidate: dict[str, Any] = {
                    "content": {"role": "model", "parts": [{"text": piece}]},
                    "index": index,
                }
                if top is not None:
                    split = fake_logprobs.tokens(piece)
                    candidate["logprobsResult"] = fake_logprobs.gemini_result(split, top, first=told)
                    told += len(split)
                pieces.append(candidate)
            pieces[-1]["finishReason"] = "STOP"
            streams.append(pieces)
        total = chunks[-1]["usageMetadata"]["candidatesTokenCount"] + sum(
            len(words(f"{text} (answer {i + 1})")) for i in range(1, answers)
        )
        merged = [c for turn in itertools.zip_longest(*streams) for c in turn if c is not None]
        out = []
        for count, candidate in enumerate(merged, start=1):
            count = total if count == len(merged) else count
            usage = {**chunks[0]["usageMetadata"], "candidatesTokenCount": count}
            usage["totalTokenCount"] = PROMPT_TOKENS + usage.get("thoughtsTokenCount", 0) + count
            out.append({**chunks[0], "candidates": [candidate], "usageMetadata": usage})
        return out

    async def _sse(self, model: str, chunks: list[dict[str, Any]]) -> AsyncIterator[bytes]:
        if model == "garbage":
            yield b'data: {"candidates": [{"content": {"parts": [{"te\r\n\r\n'
            return
        for i, chunk in enumerate(chunks):
            if i == 2 and model == "break":
                raise ConnectionDropped
            if i == 2 and model == "stream-error":
                yield sse(error_body("503"))
                return
            # Gemini separates events with CRLF pairs.
            yield sse(chunk).replace(b"\n\n", b"\r\n\r\n")
            await asyncio.sleep(0)


def _asked_logprobs(body: dict[str, Any]) -> int | None:
    """The alternatives asked for per step (0: none), or None: no logprobs asked for."""
    config = body.get("generationConfig") or {}
    return int(config.get("logprobs") or 0) if config.get("responseLogprobs") else None


def _logprobs_problem(body: dict[str, Any]) -> str | None:
    config = body.get("generationConfig") or {}
    top = config.get("logprobs")
    if top is None:
        return None
    if not config.get("responseLogprobs"):
        return "logprobs can only be set when response_logprobs is true."
    if not isinstance(top, int) or not 0 <= top <= 20:
        return f"logprobs must be in the range [0, 20], got {top}."
    return None


def _pieces(text: str, *, logprobs: bool) -> list[str]:
    """The streamed pieces of an answer: its words, or with logprobs asked for two tokens each."""
    if not logprobs:
        return words(text)
    split = fake_logprobs.tokens(text)
    return ["".join(split[i : i + 2]) for i in range(0, len(split), 2)]


def _result(model: str, split: list[str], top: int, *, first: int) -> dict[str, Any]:
    result = fake_logprobs.gemini_result(split, top, first=first)
    if model == "bad-logprobs" and first == 0 and result["chosenCandidates"]:
        result["chosenCandidates"][0]["logProbability"] = "NaN"
    return result


def _average(steps: list[dict[str, Any]]) -> float:
    values = [s["logProbability"] for s in steps if isinstance(s["logProbability"], float)]
    return sum(values) / len(values) if values else 0.0


async def _dropping(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    raise ConnectionDropped
