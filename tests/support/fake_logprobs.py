"""Token log probabilities for the fake providers: deterministic and plausible, so a test can predict them.

An answer's text is split into tokens (`tokens`): each word with the whitespace before it, each other
character (punctuation) with the whitespace before it, and trailing whitespace; joined they are the text.
A token's log probability is drawn from a hash of its position and text, between -2.5 and -0.01 (`logprob`).
Its alternatives (`alternatives`, as many as asked, most likely first) hold it at its rank among made-up
tokens whose probabilities share what it leaves (each alternative half the one before), so that they add
up to less than one.

    "Hello! You said: Hi"  ->  "Hello", "!", " You", " said", ":", " Hi"
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

_TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
# Made-up alternatives: more than the most a request may ask for (20), so each is a different token.
_OTHERS = (" the", " a", ",", ".", " and", " of", " to", " is", " in", " it", "\n", " I", " that", " you")
_OTHERS += (" for", " on", " with", " as", " was", " be", " at", " this")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def logprob(position: int, token: str) -> float:
    digest = hashlib.sha256(f"{position}:{token}".encode()).digest()
    share = int.from_bytes(digest[:4], "big") / 2**32  # 0 <= share < 1
    return round(-0.01 - share * 2.49, 6)


def alternatives(position: int, token: str, count: int) -> list[tuple[str, float]]:
    """`count` tokens most likely at this place, most likely first: the token itself among them."""
    if count < 1:
        return []
    chosen = logprob(position, token)
    left = 1 - math.exp(chosen)
    others = [t for t in _OTHERS if t != token]
    start = position % len(others)
    made = [
        (others[(start + k) % len(others)], round(math.log(left * 0.5 ** (k + 1)), 6))
        for k in range(count - 1)
    ]
    return sorted([(token, chosen), *made], key=lambda entry: -entry[1])


def openai_entries(split: list[str], top: int, *, first: int = 0) -> list[dict[str, Any]]:
    """OpenAI's `logprobs.content` entries of these tokens (an answer's from its `first`-th: a stream
    chunk's), with `top` alternatives each."""

    def entry(token: str, value: float) -> dict[str, Any]:
        return {"token": token, "logprob": value, "bytes": list(token.encode())}

    return [
        {
            **entry(token, logprob(first + i, token)),
            "top_logprobs": [entry(t, v) for t, v in alternatives(first + i, token, top)],
        }
        for i, token in enumerate(split)
    ]


def gemini_result(split: list[str], top: int, *, first: int = 0) -> dict[str, Any]:
    """Gemini's `logprobsResult` of these tokens (an answer's from its `first`-th), with `top`
    alternatives per step (`topCandidates` only when `top` >= 1)."""

    def candidate(token: str, value: float) -> dict[str, Any]:
        return {"token": token, "tokenId": token_id(token), "logProbability": value}

    result: dict[str, Any] = {
        "chosenCandidates": [candidate(t, logprob(first + i, t)) for i, t in enumerate(split)]
    }
    if top >= 1:
        result["topCandidates"] = [
            {"candidates": [candidate(a, v) for a, v in alternatives(first + i, t, top)]}
            for i, t in enumerate(split)
        ]
    return result


def token_id(token: str) -> int:
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[:3], "big")
