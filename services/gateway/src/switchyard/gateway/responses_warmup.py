"""A Responses WebSocket `response.create` with `generate: false`: the request's state prepared without
model output, as OpenAI documents it ("prepare request state without model output; the response ID can be
used as previous_response_id on a later turn").

The request is read as any response's (its conversation, `previous_response_id` and item references
resolved; validated; its model checked against the catalog and the key's allowed models) and answered at
once, runs no task, and costs nothing: `response.created`, then `response.completed` with no output and no
usage. Its input passes the input guardrails as a response's does (a refusal is the same error, a
redaction recorded), and is kept as a response's is (stored unless `store: false`, and in the connection's
memory), so the next turn continues it sending only its new items."""

from __future__ import annotations

from typing import Any

from switchyard.common.events import Usage
from switchyard.gateway import completions
from switchyard.gateway.key_policy import allowed_models
from switchyard.gateway.responses_render import shell, usage_json
from switchyard.gateway.state import Gateway
from switchyard.gateway.stored_responses import chain
from switchyard.gateway.tenants import Principal

ENDPOINT = "/v1/responses"  # what a guardrail's record and refusal name: the face the frame speaks


async def prepare(gw: Gateway, principal: Principal, body: bytes, *, request_id: str) -> list[dict[str, Any]]:
    """The events answering `body` (the request as `POST /v1/responses` would take it); an APIError for a
    request it would refuse."""
    talk = await chain.load(gw.responses, principal.tenant_id, body)
    parsed = talk.parse(body, max_prompt_chars=gw.settings.max_prompt_chars)
    if gw.guardrails is not None:
        where = {"request_id": request_id, "endpoint": ENDPOINT}
        parsed = await gw.guardrails.screen_input(parsed, principal=principal, **where)
    parsed.model = await gw.catalog.check(parsed.model, allowed=allowed_models(principal.key_policy))
    task = completions.build_task(parsed, principal, priority=None)
    created = shell(
        task, model=parsed.model, created=talk.created, status="in_progress", fields=talk.fields()
    )
    done = {
        **created,
        "status": "completed",
        "usage": usage_json(Usage(prompt_tokens=0, completion_tokens=0)),
    }
    await talk.remember(task, done)
    done["store"] = talk.fields()["store"]  # whether it was stored, known once it is
    return [
        {"type": "response.created", "sequence_number": 0, "response": created},
        {"type": "response.completed", "sequence_number": 1, "response": done},
    ]
