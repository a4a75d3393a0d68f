"""The fuzzed face bodies of tests/fuzz/test_face_bodies.py (every field of a valid body made hostile), a
bounded sample of each face's, sent to the running gateway at that face's endpoint (and the chat bodies to
the task API): none is answered 5xx (`make fuzz`: 25x the sample)."""

from __future__ import annotations

import json
import os
import random
from collections import Counter

import httpx
import pytest

from tests.fuzz.test_face_bodies import FACES, SWEEP, _swept
from tests.integration.gateway.harness import auth
from tests.security.conftest import Tenants

pytestmark = pytest.mark.e2e
SAMPLE = 6 * (25 if os.environ.get("SWITCHYARD_LONG_TESTS") == "1" else 1)
EMBED = "/v1beta/models/openai/text-embedding-3-small"
ENDPOINTS = {
    "chat": "/v1/chat/completions",
    "legacy": "/v1/completions",
    "responses": "/v1/responses",
    "responses_count": "/v1/responses/input_tokens",
    "anthropic": "/v1/messages",
    "anthropic_count": "/v1/messages/count_tokens",
    "gemini": "/v1beta/models/auto:generateContent",
    "gemini_count": "/v1beta/models/auto:countTokens",
    "embeddings": "/v1/embeddings",
    "gemini_embed": f"{EMBED}:embedContent",
    "gemini_batch": f"{EMBED}:batchEmbedContents",
    "message_batch": "/v1/messages/batches",
    "conversation_items": "/v1/conversations",
    "tasks": "/v1/tasks",
}


def test_fuzzed_face_bodies_are_never_a_5xx(tenants: Tenants) -> None:
    rng = random.Random(0)
    faces = [(face, seeds, ENDPOINTS[face]) for face, (seeds, _) in FACES.items()]
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    headers = auth(tenants.attacker.keys["admin"])
    with httpx.Client(base_url=tenants.stack.base_url, headers=headers, timeout=30) as client:
        for face, seeds, path in faces:
            bodies = [body for seed in seeds for body in _swept(seed, SWEEP)]
            for body in rng.sample(bodies, min(SAMPLE, len(bodies))):
                raw = json.dumps(body).encode()
                answer = client.post(path, content=raw, headers={"content-type": "application/json"})
                statuses[answer.status_code] += 1
                if answer.status_code >= 500:
                    failures.append(f"{face} {answer.status_code}: {answer.text[:200]} <- {raw[:200]!r}")
    print(f"\nfuzzed face bodies: {sum(statuses.values())} requests, statuses {statuses}")
    assert not failures, failures
