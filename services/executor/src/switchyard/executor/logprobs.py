"""A result's token log probabilities: those of the answers asked for, held to what one result may carry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from switchyard.common.events import Choice, TokenLogprob
from switchyard.common.events.logprobs import MAX_LOGPROB_ENTRIES, logprob_entries


@dataclass(frozen=True, slots=True)
class Kept:
    """The first answer's tokens (None: not asked), the other answers, and whether any tokens were cut."""

    first: list[TokenLogprob] | None
    others: list[Choice]
    truncated: bool = False


def kept(
    first: Sequence[TokenLogprob] | None,
    others: Sequence[Choice],
    *,
    asked: bool,
    limit: int = MAX_LOGPROB_ENTRIES,
) -> Kept:
    """The answers' tokens as a result carries them: none unless `asked` (whatever a provider sent
    unasked); at most `limit` entries (each token and each of its alternatives), the first answer's tokens
    first, then the others' in order. The cut falls before the first token whose entries do not all fit:
    it and every token after it, in any answer, lose theirs (an answer wholly after the cut has an empty
    list: it was asked, and its tokens were cut)."""
    if not asked:
        return Kept(None, [c if c.logprobs is None else _with(c, None) for c in others])
    tokens = None if first is None else list(first)
    if logprob_entries(tokens) + sum(logprob_entries(c.logprobs) for c in others) <= limit:
        return Kept(tokens, list(others))
    room = limit

    def fitting(answer: list[TokenLogprob]) -> list[TokenLogprob]:
        nonlocal room
        for index, token in enumerate(answer):
            entries = 1 + len(token.top_logprobs)
            if entries > room:
                room = 0  # nothing after the cut, even a token small enough for what was left
                return answer[:index]
            room -= entries
        return answer

    cut = None if tokens is None else fitting(tokens)
    rest = [c if c.logprobs is None else _with(c, fitting(c.logprobs)) for c in others]
    return Kept(cut, rest, truncated=True)


def _with(choice: Choice, tokens: list[TokenLogprob] | None) -> Choice:
    return choice.model_copy(update={"logprobs": tokens})
