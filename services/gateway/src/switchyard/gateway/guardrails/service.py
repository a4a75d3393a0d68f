"""Guardrails at the gateway's edge: the tenant's chain runs on the prompt before it leaves the gateway
and on the answer before the client gets it. A refusal becomes the gateway's error (400 or 413 with the
guardrail's code); a refusal or a redaction is recorded as an event for the audit ledger, naming the rule
and never the matched text."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from switchyard.common.bus import EventPublisher
from switchyard.common.events import Choice, GuardrailTriggered, TaskCompleted, ThinkingBlock
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.errors import GuardrailRefused
from switchyard.gateway.guardrails.arguments import screened_calls
from switchyard.gateway.guardrails.chain import Chain, GuardrailPolicy, load_file
from switchyard.gateway.guardrails.items import screened_items
from switchyard.gateway.guardrails.models import Finding, GuardrailConfig, GuardrailFile, Refusal
from switchyard.gateway.guardrails.tools import format_tool, spot_param, with_format
from switchyard.gateway.metrics import GUARDRAILS
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.taskapi.models import TaskResult, TaskState
from switchyard.gateway.tenants import Principal

log = logging.getLogger(__name__)

Stage = Literal["input", "output"]
Action = Literal["refused", "redacted"]
Answered = TaskCompleted | TaskResult | Choice  # an answer: its text, refusal and thinking


def prompt_field(endpoint: str) -> str:
    """The request field that holds the prompt on the face `endpoint` serves: what a refusal names."""
    if endpoint.endswith((":generateContent", ":streamGenerateContent")):
        return "contents"
    return {"/v1/responses": "input", "/v1/completions": "prompt"}.get(endpoint, "messages")


class Guardrails:
    def __init__(self, policy: GuardrailPolicy, events: EventPublisher | None) -> None:
        self.policy = policy
        self._events = events

    async def screen_input(
        self, parsed: ChatCompletionRequest, *, principal: Principal, request_id: str, endpoint: str
    ) -> ChatCompletionRequest:
        chain = self.policy.chain_for(tenant_id=principal.tenant_id, plan=principal.plan)
        if not chain.inputs:
            return parsed
        tools = list(parsed.tools or [])
        spec = parsed.json_schema_format()
        answer_format = format_tool(spec)  # read after the tools, as one more (`tool_place` knows it)
        try:
            messages, found = chain.run_input(list(parsed.messages))
            defined, in_tools = chain.run_tools(tools + ([answer_format] if answer_format else []), messages)
        except Refusal as refusal:
            param = refusal.param or prompt_field(endpoint)
            if refusal.tool is not None:
                param = spot_param(refusal.tool, parsed.tool_place(refusal.tool.index))
            raise await self._input_refused(refusal, principal, request_id, endpoint, param=param) from None
        if not found and not in_tools:
            return parsed
        await self._record_findings(principal, request_id, endpoint, "input", found + in_tools)
        update: dict[str, Any] = {"messages": messages}
        if in_tools and tools:
            update["tools"] = defined[: len(tools)]
        if in_tools and spec is not None and answer_format is not None:
            fmt = {**(parsed.response_format or {}), "json_schema": with_format(spec, defined[len(tools)])}
            update["response_format"] = fmt
        return parsed.model_copy(update=update)

    async def screen_inputs(
        self, texts: list[str], *, principal: Principal, request_id: str, endpoint: str
    ) -> list[str]:
        """An embedding request's inputs, each as a prompt of its own, through the input hooks but prompt
        injection (`Chain.for_embeddings`): a refusal (size, PII to refuse) is the gateway's error naming
        `input`, redactions are recorded as for a prompt."""
        chain = self.policy.chain_for(tenant_id=principal.tenant_id, plan=principal.plan).for_embeddings()
        if not chain.inputs:
            return texts
        try:
            screened, found = chain.run_inputs(texts)
        except Refusal as refusal:
            raise await self._input_refused(refusal, principal, request_id, endpoint, param="input") from None
        if found:
            await self._record_findings(principal, request_id, endpoint, "input", found)
        return screened

    async def screen_output(
        self, done: TaskCompleted, *, principal: Principal, request_id: str, endpoint: str
    ) -> TaskCompleted:
        chain = self.policy.chain_for(tenant_id=principal.tenant_id, plan=principal.plan)
        if not chain.outputs:
            return done
        update, found = _screened_answers(chain, done, done.other_choices)
        if not found:
            return done
        await self._record_findings(principal, request_id, endpoint, "output", found)
        return done.model_copy(update=update)

    async def screen_task(
        self, state: TaskState, *, principal: Principal, request_id: str, endpoint: str
    ) -> TaskState:
        """A task API result, as `screen_output` does for a completion. The redaction is recorded once per
        task (the event id derives from the task), however often the client reads it."""
        chain = self.policy.chain_for(tenant_id=principal.tenant_id, plan=principal.plan)
        if state.result is None or not chain.outputs:
            return state
        result = state.result
        update, found = _screened_answers(chain, result, result.other_choices)
        if not found:
            return state
        await self._record_findings(principal, request_id, endpoint, "output", found, once_for=state.id)
        result = result.model_copy(update=update)
        return state.model_copy(update={"result": result})

    async def screen_items(
        self,
        items: list[dict[str, Any]],
        *,
        principal: Principal,
        request_id: str,
        endpoint: str,
        once_for: str,
    ) -> list[dict[str, Any]]:
        """A stored response's output items (or its conversation's) for the user reading them, as
        `screen_task` does for a task result: the organisation's responses, the reader's plan's hooks.
        Recorded once per stored response (`once_for`)."""
        chain = self.policy.chain_for(tenant_id=principal.tenant_id, plan=principal.plan)
        if not chain.outputs:
            return items
        screened, found = screened_items(items, chain.run_output)
        if found:
            await self._record_findings(principal, request_id, endpoint, "output", found, once_for=once_for)
        return screened

    def screens_output(self, principal: Principal) -> bool:
        """Whether this tenant's answers pass output hooks (which need the whole answer)."""
        return bool(self.policy.chain_for(tenant_id=principal.tenant_id, plan=principal.plan).outputs)

    async def _record_findings(
        self,
        principal: Principal,
        request_id: str,
        endpoint: str,
        stage: Stage,
        found: list[Finding],
        *,
        once_for: str | None = None,
    ) -> None:
        by_guardrail: dict[str, dict[str, int]] = {}
        for f in found:
            counts = by_guardrail.setdefault(f.guardrail, {})
            counts[f.rule] = counts.get(f.rule, 0) + f.count
        for guardrail, counts in by_guardrail.items():
            rule = ",".join(sorted(counts))
            await self._record(
                principal,
                request_id,
                endpoint,
                stage,
                guardrail,
                rule,
                "redacted",
                counts=counts,
                once_for=once_for,
            )

    async def _input_refused(
        self, refusal: Refusal, principal: Principal, request_id: str, endpoint: str, *, param: str
    ) -> GuardrailRefused:
        """A refused input, recorded: the gateway's error naming the request's field `param`."""
        await self._record(
            principal, request_id, endpoint, "input", refusal.guardrail, refusal.rule, "refused",
            code=refusal.code,
        )  # fmt: skip
        return GuardrailRefused(refusal.message, code=refusal.code, param=param, status=refusal.status)

    async def _record(
        self,
        principal: Principal,
        request_id: str,
        endpoint: str,
        stage: Stage,
        guardrail: str,
        rule: str,
        action: Action,
        *,
        code: str | None = None,
        counts: dict[str, int] | None = None,
        once_for: str | None = None,
    ) -> None:
        GUARDRAILS.labels(guardrail, stage, action).inc()
        if self._events is None:
            return
        event = GuardrailTriggered(
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            api_key_id=principal.api_key_id,
            request_id=request_id,
            endpoint=endpoint,
            stage=stage,
            guardrail=guardrail,
            rule=rule,
            action=action,
            code=code,
            counts=counts or {},
            at=datetime.now(UTC),
        )
        try:
            await self._events.publish(
                event,
                event_id=self._events.derived_id(
                    once_for or request_id, f"guardrail.{stage}.{guardrail}", tenant_id=principal.tenant_id
                ),
                tenant_id=principal.tenant_id,
            )
        except Exception:  # the refusal or redaction stands; the record is what we could not make
            log.exception("could not record a guardrail event for request %s", request_id)


def _screened(chain: Chain, answer: Answered) -> tuple[dict[str, Any], list[Finding]]:
    """An answer's text, refusal, thinking and tool calls' arguments through the output hooks, as the update
    of its fields. An answer whose text they change loses its token log probabilities: its tokens would
    spell out what was redacted."""
    text, found = chain.run_output(answer.content)
    refusal, found_in_refusal = chain.run_output(answer.refusal) if answer.refusal else (answer.refusal, [])
    kept, found_in_thinking = _screened_thinking(chain, answer.thinking)
    update: dict[str, Any] = {"content": text, "refusal": refusal, "thinking": kept}
    if text != answer.content:
        update["logprobs"] = None
    found_in_calls: list[Finding] = []
    if answer.tool_calls:

        def screen(value: str) -> str:
            clean, more = chain.run_output(value)
            found_in_calls.extend(more)
            return clean

        update["tool_calls"] = screened_calls(answer.tool_calls, screen)
    return update, found + found_in_refusal + found_in_thinking + found_in_calls


def _screened_answers(
    chain: Chain, first: Answered, others: list[Choice]
) -> tuple[dict[str, Any], list[Finding]]:
    """A result's answers through the output hooks (the first, and the others of a request for several,
    `n`), as the update of the result's fields and what the hooks found."""
    update, found = _screened(chain, first)
    screened: list[Choice] = []
    for choice in others:
        changed, more = _screened(chain, choice)
        found += more
        screened.append(choice.model_copy(update=changed) if more else choice)
    return {**update, "other_choices": screened}, found


def _screened_thinking(
    chain: Chain, thinking: list[ThinkingBlock] | None
) -> tuple[list[ThinkingBlock] | None, list[Finding]]:
    """An answer's thinking blocks through the output hooks, as its text goes: a block they would change is
    left out whole, since its signature covers its text (Anthropic refuses an altered block sent back, and
    a tool loop goes on without thinking when its turn has none)."""
    kept: list[ThinkingBlock] = []
    found: list[Finding] = []
    for block in thinking or []:
        more = chain.run_output(block.thinking)[1] if block.thinking else []
        found += more
        if not more:
            kept.append(block)
    return (kept or None) if thinking else thinking, found


def from_settings(
    settings: GatewaySettings, events: EventPublisher | None, file: GuardrailFile | None = None
) -> Guardrails | None:
    """The gateway's guardrails: `file`, the guardrail file read already (`load_file`), else read here."""
    if not settings.guardrails_enabled:
        return None
    base = GuardrailConfig(
        injection=settings.guardrail_injection,
        pii=settings.guardrail_pii,
        pii_output=settings.guardrail_pii_output,
        max_prompt_tokens=settings.guardrail_max_prompt_tokens,
    )
    file = file if file is not None else load_file(settings.guardrails_path)
    return Guardrails(GuardrailPolicy(base, file), events)
