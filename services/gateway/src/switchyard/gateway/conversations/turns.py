"""A Responses request's `conversation`: the conversation whose items are the input before its own, and
its items and the answer's appended to it once the answer is whole (`completed` or `incomplete`: a
failed answer adds nothing, as OpenAI's does not)."""

from __future__ import annotations

import logging
from typing import Any

from switchyard.gateway.conversations.store import (
    CONVERSATION_ID,
    ConversationStore,
    StoredConversation,
    not_found,
)
from switchyard.gateway.errors import APIError, InvalidRequest
from switchyard.gateway.metrics import CONVERSATION_TURNS

log = logging.getLogger(__name__)


async def opened(
    store: ConversationStore, tenant_id: str, named: Any, previous_response_id: Any
) -> StoredConversation:
    """The conversation a request names (`conversation`: its id, or `{"id": ...}`), of the caller's
    organisation: another's, like one deleted or expired, is a 404 that says no more."""
    if previous_response_id is not None:
        raise InvalidRequest(
            "Mutually exclusive parameters. Ensure you are only providing one of: 'previous_response_id' "
            "or 'conversation'.",
            code="mutually_exclusive_parameters",
        )
    conversation_id = named.get("id") if isinstance(named, dict) else named
    if not isinstance(conversation_id, str):
        raise InvalidRequest(
            'conversation: a conversation\'s id, or {"id": "conv_..."}',
            code="invalid_type",
            param="conversation",
        )
    if not conversation_id.startswith(CONVERSATION_ID):
        raise InvalidRequest(
            f"Invalid 'conversation': '{conversation_id[:80]}'. Expected an ID that begins with "
            f"'{CONVERSATION_ID}'.",
            code="invalid_conversation_id",
            param="conversation",
        )
    record = await store.get(tenant_id, conversation_id)
    if record is None:
        raise not_found(conversation_id, param="conversation")
    return record


async def append(
    store: ConversationStore, tenant_id: str, conversation_id: str, items: list[dict[str, Any]]
) -> None:
    """Appends a turn's items (the request's own, then the answer's output). The answer has gone or goes
    out anyway, so a conversation that cannot take them is logged and counted, not raised."""
    try:
        record = await store.change(
            tenant_id, conversation_id, lambda held: held.with_items(items), adding=items
        )
    except APIError as exc:
        log.warning("conversation %s: a turn's items not appended: %s", conversation_id, exc.message)
        CONVERSATION_TURNS.labels("refused").inc()
        return
    if record is None:
        log.info("conversation %s: gone before its turn's items were appended", conversation_id)
        CONVERSATION_TURNS.labels("gone").inc()
        return
    CONVERSATION_TURNS.labels("appended").inc()
