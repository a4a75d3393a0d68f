"""A chain of hooks, and which chain a tenant gets: the gateway's settings, overlaid by the guardrail
file's defaults, then the plan (the user's, else the organisation's), then the tenant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from switchyard.common.config import load_yaml_model
from switchyard.common.events import ChatMessage, ToolSpec
from switchyard.gateway.guardrails.injection import PromptInjection
from switchyard.gateway.guardrails.models import (
    PII_KINDS,
    Finding,
    GuardrailConfig,
    GuardrailFile,
    InputHook,
    OutputHook,
    Refusal,
    ToolsHook,
)
from switchyard.gateway.guardrails.pii import Pii
from switchyard.gateway.guardrails.size import PromptSize


@dataclass(frozen=True)
class Chain:
    """Input hooks run in order on the prompt (the first refusal wins); output hooks on the answer."""

    inputs: tuple[InputHook, ...] = ()
    outputs: tuple[OutputHook, ...] = ()

    def run_input(self, messages: list[ChatMessage]) -> tuple[list[ChatMessage], list[Finding]]:
        found: list[Finding] = []
        for hook in self.inputs:
            messages, more = hook.on_input(messages)
            found += more
        return messages, found

    def run_tools(
        self, tools: list[ToolSpec], messages: list[ChatMessage]
    ) -> tuple[list[ToolSpec], list[Finding]]:
        """The tool definitions offered with `messages` (already screened) through the hooks that read
        them (`ToolsHook`), in the chain's order."""
        found: list[Finding] = []
        for hook in self.inputs:
            if tools and isinstance(hook, ToolsHook):
                tools, more = hook.on_tools(tools, messages)
                found += more
        return tools, found

    def for_embeddings(self) -> Chain:
        """The hooks an embedding request's inputs pass: the input hooks but prompt injection (a corpus may
        well quote "ignore previous instructions": it is indexed, not obeyed); no output (vectors)."""
        return Chain(tuple(h for h in self.inputs if not isinstance(h, PromptInjection)))

    def run_inputs(self, texts: list[str]) -> tuple[list[str], list[Finding]]:
        """Each text as a prompt of its own (a user message): a size limit holds per input, as OpenAI's
        per-input token limit does. A refusal names the input."""
        screened: list[str] = []
        found: list[Finding] = []
        for n, text in enumerate(texts):
            try:
                messages, more = self.run_input([ChatMessage(role="user", content=text)])
            except Refusal as refusal:
                raise _of_input(refusal, n) from None
            screened.append(messages[0].text())
            found += more
        return screened, found

    def run_output(self, text: str) -> tuple[str, list[Finding]]:
        found: list[Finding] = []
        for hook in self.outputs:
            text, more = hook.on_output(text)
            found += more
        return text, found


def _of_input(refusal: Refusal, n: int) -> Refusal:
    """`refusal`, its message naming the input (`n`) it refused."""
    return Refusal(
        guardrail=refusal.guardrail,
        rule=refusal.rule,
        code=refusal.code,
        message=f"Input item {n}: {refusal.message}",
        status=refusal.status,
    )


def build(config: GuardrailConfig, extra: Sequence[InputHook | OutputHook] = ()) -> Chain:
    """Size first (cheapest, and a refusal), then injection, then PII redaction, then `extra` hooks."""
    inputs: list[InputHook] = []
    outputs: list[OutputHook] = []
    if config.max_prompt_tokens is not None or config.max_prompt_chars is not None:
        inputs.append(PromptSize(max_tokens=config.max_prompt_tokens, max_chars=config.max_prompt_chars))
    if config.injection == "refuse":
        inputs.append(PromptInjection())
    if config.pii in ("redact", "refuse") or config.pii_output:
        pii = Pii(
            mode=config.pii or "off",
            kinds=frozenset(config.pii_kinds if config.pii_kinds is not None else PII_KINDS),
            output=bool(config.pii_output),
        )
        if config.pii in ("redact", "refuse"):
            inputs.append(pii)
        if config.pii_output:
            outputs.append(pii)
    for hook in extra:
        if isinstance(hook, InputHook):
            inputs.append(hook)
        if isinstance(hook, OutputHook):
            outputs.append(hook)
    return Chain(tuple(inputs), tuple(outputs))


def load_file(path: Path | None) -> GuardrailFile:
    """The file at SWITCHYARD_GUARDRAILS_PATH; a mistake in it is a ConfigurationError naming the file and
    the field: the gateway does not start (rather than start without the guardrails it asks for)."""
    if path is None:
        return GuardrailFile()
    return load_yaml_model(path, GuardrailFile, "guardrail file (SWITCHYARD_GUARDRAILS_PATH)", empty={})


@dataclass
class GuardrailPolicy:
    """The chain of each (tenant, plan), built once."""

    base: GuardrailConfig
    file: GuardrailFile = field(default_factory=GuardrailFile)
    extra: Sequence[InputHook | OutputHook] = ()
    _chains: dict[tuple[str, str], Chain] = field(default_factory=dict)

    def config_for(self, *, tenant_id: str, plan: str) -> GuardrailConfig:
        config = self.file.defaults.over(self.base)
        by_plan = self.file.plans.get(plan)  # type: ignore[call-overload]
        if by_plan is not None:
            config = by_plan.over(config)
        by_tenant = self.file.tenants.get(tenant_id)
        if by_tenant is not None:
            config = by_tenant.over(config)
        return config

    def chain_for(self, *, tenant_id: str, plan: str) -> Chain:
        key = (tenant_id, plan)
        chain = self._chains.get(key)
        if chain is None:
            if len(self._chains) > 10_000:
                self._chains.clear()
            chain = self._chains[key] = build(self.config_for(tenant_id=tenant_id, plan=plan), self.extra)
        return chain
