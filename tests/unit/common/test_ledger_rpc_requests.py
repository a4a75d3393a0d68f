"""Ledger requests on the bus: JSON integers only (lax pydantic read `true` as 1 and `"7"` as 7), and an
inclusion proof only for the tenant named (the entry is in the proof)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchyard.common.ledger_rpc import (
    CheckpointRequest,
    ConsistencyRequest,
    DigestRequest,
    InclusionRequest,
)

pytestmark = pytest.mark.unit


def test_ledger_requests_take_integers_only_and_inclusion_needs_a_tenant() -> None:
    """`{"seq": true}` was read as entry 1; an inclusion request without a tenant proved anyone's entry."""
    for model, body in (
        (InclusionRequest, b'{"seq": true, "tenant_id": "acme"}'),
        (InclusionRequest, b'{"seq": "7", "tenant_id": "acme"}'),
        (InclusionRequest, b'{"seq": 7, "tree_size": true, "tenant_id": "acme"}'),
        (InclusionRequest, b'{"seq": 7}'),
        (InclusionRequest, b'{"seq": 7, "tenant_id": ""}'),
        (CheckpointRequest, b'{"tree_size": true}'),
        (ConsistencyRequest, b'{"first": true}'),
        (ConsistencyRequest, b'{"first": 1, "second": false}'),
        (DigestRequest, b'{"tenant_id": "acme", "text": "x", "seq": true}'),
        (DigestRequest, b'{"tenant_id": "acme"}'),
        (DigestRequest, b'{"tenant_id": "acme", "text": "x", "input": ["x"]}'),
        (DigestRequest, b'{"text": "x"}'),
    ):
        with pytest.raises(ValidationError):
            model.model_validate_json(body)
    assert InclusionRequest.model_validate_json(b'{"seq": 7, "tenant_id": "acme"}').seq == 7
    assert DigestRequest.model_validate_json(b'{"tenant_id": "acme", "text": ""}').text == ""
