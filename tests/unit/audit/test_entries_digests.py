"""Content digests in ledger entries are keyed per tenant: a reader of the ledger (or its SIEM export) cannot
confirm a guessed prompt, and an erased tenant's entries carry none."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import orjson
import pytest

from switchyard.audit import chain
from switchyard.audit.digests import TenantKey
from switchyard.audit.entries import draft_for, needs_key
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import ChatMessage, ChatRequest, EmbeddingRequest, TaskSubmitted

pytestmark = pytest.mark.unit
T = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
PROMPT = "fire Alice"
ACME = TenantKey("acme", bytes(range(32)))
GLOBEX = TenantKey("globex", bytes(range(1, 33)))


def _submitted(request: ChatRequest | EmbeddingRequest, tenant: str = "acme") -> TaskSubmitted:
    return TaskSubmitted(task_id="t1", tenant_id=tenant, request=request, submitted_at=T)


def _details(payload: TaskSubmitted, key: TenantKey | None) -> dict[str, object]:
    event = CloudEvent(id="e1", source="switchyard/gateway", type=payload.EVENT_TYPE, data={})
    return draft_for(event, payload, key).details


def test_a_prompt_is_recorded_by_its_tenants_keyed_digest_not_its_sha256() -> None:
    chat = _submitted(ChatRequest(messages=[ChatMessage(role="user", content=PROMPT)]))
    details = _details(chat, ACME)
    expected = hmac.new(ACME.secret, PROMPT.encode(), hashlib.sha256).hexdigest()
    assert details["prompt_hmac_sha256"] == expected and details["prompt_chars"] == len(PROMPT)
    # the guess a reader of the ledger would try finds nothing
    assert hashlib.sha256(PROMPT.encode()).hexdigest() not in chain.canonical_json(details)
    assert "prompt_sha256" not in details
    # the same prompt under another tenant's key: nothing links the two entries
    other = _details(_submitted(chat.request, "globex"), GLOBEX)  # type: ignore[arg-type]
    assert other["prompt_hmac_sha256"] != expected
    assert needs_key(chat)


def test_an_erased_tenants_entry_has_no_digest_but_keeps_its_counts() -> None:
    chat = _submitted(ChatRequest(messages=[ChatMessage(role="user", content=PROMPT)]))
    details = _details(chat, None)
    assert "prompt_hmac_sha256" not in details and details["prompt_chars"] == len(PROMPT)
    assert PROMPT not in chain.canonical_json(details)


def test_embedding_inputs_are_recorded_by_keyed_digest() -> None:
    texts = ["fire Alice", "promote Bob"]
    details = _details(_submitted(EmbeddingRequest(kind="embedding", model="m", input=texts)), ACME)
    expected = hmac.new(ACME.secret, orjson.dumps(texts), hashlib.sha256).hexdigest()
    assert details["input_hmac_sha256"] == expected and "input_sha256" not in details
    assert hashlib.sha256(orjson.dumps(texts)).hexdigest() not in chain.canonical_json(details)


def test_a_key_is_never_printed() -> None:
    assert ACME.secret.hex() not in repr(ACME) and str(ACME.secret) not in repr(ACME)
