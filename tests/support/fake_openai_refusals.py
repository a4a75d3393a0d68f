"""What OpenAI's reasoning models refuse in /v1/chat/completions, as the fake OpenAI refuses it: the
400s, with OpenAI's error bodies, that a request for one of these names gets when it carries a field the
model does not take. Written from OpenAI's documentation and error messages, apart from the adapter's own
table (`providers/openai/models.py`), so that a test against the fake checks the adapter against OpenAI,
not against itself. Other model names are refused nothing here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs")
SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")
HIGH = ("low", "medium", "high")


@dataclass(frozen=True)
class Model:
    efforts: tuple[str, ...]
    default: str  # the effort in force when none is sent
    tools: str = "any"  # "none_effort": tools only at effort none; "responses": tools only via /v1/responses


O_SERIES = Model(HIGH, "medium")
GPT_5 = Model(("minimal", *HIGH), "medium")
GPT_5_1 = Model(("none", *HIGH), "none")
GPT_5_2 = Model(("none", *HIGH, "xhigh"), "none")
GPT_5_4 = Model(("none", *HIGH, "xhigh"), "none", tools="none_effort")
GPT_6 = Model(("none", *HIGH, "xhigh", "max"), "medium", tools="none_effort")
GPT_6_RESPONSES = Model((*HIGH, "xhigh", "max"), "medium", tools="responses")
GPT_6_1_SOL = Model((*HIGH, "xhigh"), "medium", tools="responses")  # max: only through /v1/responses

MODELS: dict[str, Model] = {
    **dict.fromkeys(("o1", "o1-pro", "o3", "o3-mini", "o3-pro", "o4-mini"), O_SERIES),
    **dict.fromkeys(("gpt-5", "gpt-5-mini", "gpt-5-nano"), GPT_5),
    "gpt-5.1": GPT_5_1,
    "gpt-5.2": GPT_5_2,
    **dict.fromkeys(("gpt-5.4", "gpt-5.4-mini", "gpt-5.5"), GPT_5_4),
    **dict.fromkeys(("gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna"), GPT_5_4),
    **dict.fromkeys(("gpt-6-luna", "gpt-6-sol", "gpt-6.1-terra", "gpt-6.1-luna"), GPT_6),
    "gpt-6-astra": GPT_6_RESPONSES,
    "gpt-6.1-sol": GPT_6_1_SOL,
}


def _error(message: str, param: str, code: str | None) -> dict[str, Any]:
    return {"message": message, "type": "invalid_request_error", "param": param, "code": code}


def _listed(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def effort_in_force(body: dict[str, Any]) -> str | None:
    """The reasoning effort a listed model reasons at (the one asked, else its default); None for others."""
    model = MODELS.get(SNAPSHOT.sub("", str(body.get("model", ""))))
    return None if model is None else str(body.get("reasoning_effort", model.default))


def refusal(body: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI's error object for what the model named in `body` refuses, or None when it takes it all."""
    name = str(body.get("model", ""))
    model = MODELS.get(SNAPSHOT.sub("", name))
    if model is None:
        return None
    if "max_tokens" in body:
        return _error(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    effort = body.get("reasoning_effort", model.default)
    if effort not in model.efforts:
        return _error(
            f"Unsupported value: 'reasoning_effort' does not support '{effort}' with this model. "
            f"Supported values are: {_listed(model.efforts)}.",
            "reasoning_effort",
            "unsupported_value",
        )
    for field in (f for f in SAMPLING if f in body):
        if "none" not in model.efforts:  # the o-series and gpt-5 sample at their defaults only
            if field in ("temperature", "top_p") and body[field] == 1:
                continue
            return _error(
                f"Unsupported value: '{field}' does not support {body[field]} with this model. "
                "Only the default (1) value is supported."
                if field in ("temperature", "top_p")
                else f"Unsupported parameter: '{field}' is not supported with this model.",
                field,
                "unsupported_value" if field in ("temperature", "top_p") else "unsupported_parameter",
            )
        if effort != "none":
            return _error(
                f"Unsupported parameter: '{field}' is not supported with reasoning effort '{effort}'. "
                "Set reasoning_effort to 'none' to use it.",
                field,
                "unsupported_parameter",
            )
    if body.get("tools") and model.tools == "responses":
        return _error(
            f"Function tools are not supported for {name} in /v1/chat/completions. "
            "To use function tools, use /v1/responses.",
            "tools",
            "unsupported_parameter",
        )
    if body.get("tools") and model.tools == "none_effort" and effort != "none":
        return _error(
            f"Function tools with reasoning_effort are not supported for {name} in /v1/chat/completions. "
            "To use function tools, use /v1/responses or set reasoning_effort to 'none'.",
            "reasoning_effort",
            None,
        )
    return None


FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def name_refusal(body: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI's refusal of a function named outside its pattern (Gemini's `.` and `:`, which it takes)."""
    for i, tool in enumerate(body.get("tools") or []):
        name = str((tool.get("function") or {}).get("name", ""))
        if not FUNCTION_NAME.fullmatch(name):
            return _error(
                f"Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string "
                "that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                f"tools[{i}].function.name",
                "invalid_value",
            )
    return None
