"""The items a Conversations create call adds (`conversations.items.added`): what the conversation keeps is
what it can write again."""

from __future__ import annotations

import orjson
import pytest

from switchyard.gateway import bounds
from switchyard.gateway.conversations import items
from switchyard.gateway.conversations.store import StoredConversation
from switchyard.gateway.errors import InvalidRequest

pytestmark = pytest.mark.unit


def test_an_item_too_deep_to_be_kept_is_a_400_naming_it() -> None:
    """A field nested 300 levels (orjson reads 1,024, writes ~254) was taken, then writing the conversation
    raised orjson's TypeError: a 500."""
    deep = orjson.loads(b'{"a":' * 300 + b"{}" + b"}" * 300)
    given = [{"role": "user", "content": "hi"}, {"role": "user", "content": "and?", "notes": deep}]
    with pytest.raises(InvalidRequest) as refused:
        items.added(given, held=set())
    assert (refused.value.code, refused.value.param) == (bounds.NESTING, "items.1")
    kept = items.added(given[:1], held=set())
    StoredConversation("conv_1", items=tuple(kept)).to_bytes()
