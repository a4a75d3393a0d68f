"""Where an event came from, as the server established it: the subject it was stored on, and who NATS lets
publish there (common/publishers.py), never what its payload claims (`api_key_id`, `user_id`, `source`).

A tenant-scoped integrator's event says `integrator:<token>`: a user made with `switchyard bus credentials
DIR --integrator NAME --tenant T`, T being the tenant whose subject token that is (its results consumer is
`NAME-<token>`); a service's says `service:<name>`; a bare `switchyard.task.submitted` (or `cancelled`,
`feedback`) says the gateway or an all-tenant integrator, which only NATS can tell apart. Every entry of an
event records it (format v2, chain.py), inside the hashed bytes.
"""

from __future__ import annotations

from typing import Any

from switchyard.common.publishers import publishers

MAX_SUBJECT_CHARS = 256  # a NATS subject a stream stores (ours are under 90 characters)


def of_subject(subject: str) -> dict[str, Any]:
    """The entry's `provenance`: `subject` and `by`, who may have published on it."""
    return {"subject": subject[:MAX_SUBJECT_CHARS], "by": list(publishers(subject))}
