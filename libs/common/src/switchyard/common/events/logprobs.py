"""Token log probabilities of an answer (OpenAI's shape), as the task events carry them."""

from __future__ import annotations

from pydantic import BaseModel, Field

# The most alternatives per output token a request may ask for (`top_logprobs`; OpenAI's and Gemini's limit).
MAX_TOP_LOGPROBS = 20
# The most token entries (each output token and each of its alternatives) a task's result carries: token
# log probabilities of a long answer with many alternatives would outgrow the bus's 8 MiB message limit
# (~40-60 bytes an entry in JSON). An answer beyond it carries the first tokens' entries up to the limit
# and says so (`logprobs_truncated`).
MAX_LOGPROB_ENTRIES = 65536


class TopLogprob(BaseModel):
    """A token and its log probability (OpenAI's shape). `bytes`: the token's bytes where they are not its
    text's UTF-8 (a token that holds part of a character), else None: a reader takes `token.encode()`."""

    token: str
    logprob: float = Field(allow_inf_nan=False)
    bytes: list[int] | None = None

    def utf8(self) -> list[int]:
        """The token's bytes, as OpenAI's `bytes` field gives them."""
        return list(self.token.encode()) if self.bytes is None else self.bytes


class TokenLogprob(TopLogprob):
    """One output token, with the most likely tokens at its place (as many as `top_logprobs` asked for,
    most likely first; the chosen token may be among them)."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


def logprob_entries(tokens: list[TokenLogprob] | None) -> int:
    """How many entries the tokens hold: each token and each of its alternatives."""
    return sum(1 + len(t.top_logprobs) for t in tokens or ())
