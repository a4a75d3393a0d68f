"""Reusing a prompt's prediction: the same tenant's same user turns are classified once.

A prediction is a function of the text alone (every prompt goes through the encoder in a run of its own,
so its batch cannot move it), so a repeat can take the earlier result instead of ~3-10 ms of encoder CPU.
Repeats are common where it costs most: every turn of an agent's tool loop re-sends the same user turns
(tool calls and results are not user turns), and clients retry. Urgency is not kept: it reads the task's
priority and deadline, and is computed for every task.

Partitioned by tenant (the key is a hash of the tenant and the text, so one tenant's prompts can neither be
found nor timed by another), bounded (least recently used out), in memory, never the text itself.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from switchyard.classifier.classify import Prediction


def key(tenant_id: str, text: str) -> bytes:
    """128 bits of BLAKE2b over the tenant (length-prefixed, so no two tenant/text pairs run together) and
    the text."""
    tenant = tenant_id.encode("utf-8", "surrogatepass")
    h = hashlib.blake2b(len(tenant).to_bytes(4, "big"), digest_size=16, person=b"sy-classify")
    h.update(tenant)
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.digest()


class Predictions:
    """A bounded LRU map of (tenant, text) -> Prediction; size 0 keeps nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[bytes, Prediction] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def key(self, tenant_id: str, text: str) -> bytes | None:
        """The prompt's key, or None when nothing is kept (size 0): a long prompt is then not hashed."""
        return key(tenant_id, text) if self.size > 0 else None

    def get(self, k: bytes) -> Prediction | None:
        found = self._items.get(k)
        if found is not None:
            self._items.move_to_end(k)
        return found

    def put(self, k: bytes, prediction: Prediction) -> None:
        if self.size <= 0:
            return
        self._items[k] = prediction
        self._items.move_to_end(k)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
