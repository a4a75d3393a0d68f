"""Guardrails: what a hook sees and returns, the refusal it may raise, and the configuration of a chain.

A hook is pure (no web framework, no bus): it reads messages or an answer, and either returns them
(possibly redacted) with what it found, or raises `Refusal`. Findings and refusals name a rule, never the
text that matched, so they can go to the audit ledger as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from switchyard.common.events import ChatMessage, ToolSpec

PiiMode = Literal["off", "redact", "refuse"]
PiiKind = Literal["email", "phone", "credit_card", "iban", "us_ssn", "es_dni", "api_key"]
PII_KINDS: tuple[str, ...] = PiiKind.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that fired without refusing (a redaction): `count` places were changed."""

    guardrail: str
    rule: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class ToolSpot:
    """A place in a tool's definition: the tool (its index in the request's tools), the field (None: the
    tool as a whole) and, in its schema, the keys and indexes down to the value."""

    index: int
    field: Literal["description", "parameters"] | None = None
    path: tuple[str | int, ...] = ()


class Refusal(Exception):
    """A hook refuses the request: `code` is the error code the client gets, `status` its HTTP status;
    `param` the request field it names when not the prompt's, `tool` the place in a tool definition."""

    def __init__(
        self,
        *,
        guardrail: str,
        rule: str,
        code: str,
        message: str,
        status: int = 400,
        param: str | None = None,
        tool: ToolSpot | None = None,
    ) -> None:
        super().__init__(message)
        self.guardrail = guardrail
        self.rule = rule
        self.code = code
        self.message = message
        self.status = status
        self.param = param
        self.tool = tool


@runtime_checkable
class InputHook(Protocol):
    """Runs on the prompt before it leaves the gateway."""

    name: str

    def on_input(self, messages: list[ChatMessage]) -> tuple[list[ChatMessage], list[Finding]]: ...


@runtime_checkable
class ToolsHook(Protocol):
    """An input hook that also reads the tool definitions offered with the prompt (their descriptions and
    JSON schemas are model input like any other: an MCP server's tool may carry instructions for the
    model). A hook without `on_tools` does not see them."""

    name: str

    def on_tools(
        self, tools: list[ToolSpec], messages: list[ChatMessage]
    ) -> tuple[list[ToolSpec], list[Finding]]: ...


@runtime_checkable
class OutputHook(Protocol):
    """Runs on a (non-streamed) answer before the client gets it."""

    name: str

    def on_output(self, text: str) -> tuple[str, list[Finding]]: ...


class GuardrailConfig(BaseModel):
    """One layer of guardrail settings. Layers stack: the gateway's settings, then the file's `defaults`,
    then the plan, then the tenant; a field a layer leaves unset keeps the value below it."""

    model_config = ConfigDict(extra="forbid")

    injection: Literal["off", "refuse"] | None = Field(
        default=None, description="refuse prompts matching the prompt-injection patterns"
    )
    pii: PiiMode | None = Field(default=None, description="redact or refuse PII in prompts")
    pii_kinds: list[PiiKind] | None = Field(
        default=None, min_length=1, description="which PII kinds (default: all; none would screen nothing)"
    )
    pii_output: bool | None = Field(default=None, description="also redact PII in (non-streamed) answers")
    max_prompt_tokens: int | None = Field(default=None, gt=0, description="estimated prompt tokens allowed")
    max_prompt_chars: int | None = Field(default=None, gt=0, description="prompt characters allowed")

    @field_validator("injection", "pii", mode="before")
    @classmethod
    def _yaml_off(cls, v: object) -> object:
        """YAML 1.1 reads a bare `off` as false."""
        return "off" if v is False else v

    def over(self, base: GuardrailConfig) -> GuardrailConfig:
        """This layer on top of `base`."""
        return base.model_copy(update=self.model_dump(exclude_unset=True))


class GuardrailFile(BaseModel):
    """The YAML file named by SWITCHYARD_GUARDRAILS_PATH."""

    model_config = ConfigDict(extra="forbid")

    defaults: GuardrailConfig = Field(default_factory=GuardrailConfig)
    plans: dict[Literal["free", "pro", "enterprise"], GuardrailConfig] = Field(default_factory=dict)
    tenants: dict[str, GuardrailConfig] = Field(default_factory=dict, description="by tenant id")
