"""Prompt-injection patterns: a maintained list of named rules, each a regular expression over the
normalised text of user and tool messages (the operator's own system and developer messages are trusted).

Normalisation folds case and Unicode compatibility forms (NFKC), reads Unicode tag characters as the ASCII
they hide, drops invisible characters, collapses whitespace and reads Cyrillic and Greek lookalike letters
as Latin, so fullwidth letters, a zero-width space or a Cyrillic o (U+043E) in a word do not slip past; a
message that is JSON (an agent's tool result) is also read through its escapes (`json_strings`). What
it does not undo (and no pattern list can): paraphrase, other languages, letters spaced or hyphenated
apart, encodings such as base64 or ROT13, text inside images or PDFs. Each rule is tested with prompts it
must catch and ordinary prompts it must let through (tests/unit/gateway/test_guardrails.py); add both when
adding a rule.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

from switchyard.common.events import ChatMessage, ToolSpec
from switchyard.gateway.guardrails.models import Finding, Refusal, ToolSpot
from switchyard.gateway.guardrails.tools import tool_texts

CHECKED_ROLES = frozenset({"user", "tool"})
# A coding agent sends its whole conversation again on every turn (~0.8 MB near a 200k-token context), and
# a scan costs ~0.1 s per MB of text: a message this long that was found clean is remembered by its digest
# (per chain, so per tenant and plan), and only a turn's new messages are scanned.
REMEMBER_CHARS = 1024
REMEMBERED = 2048
COLLAPSE_CHARS = 64 * 1024  # how much of a text `collapsed` splits at once
# Characters that show nothing: zero-width and format characters (soft hyphen, bidi controls, invisible
# operators, word joiners, the byte-order mark), the combining grapheme joiner, variation selectors, the
# Hangul fillers and the Mongolian vowel separator, dropped before matching; and Unicode tag characters,
# which spell ASCII invisibly ("ASCII smuggling"): a model reads them, so they are read as that ASCII.
_HIDDEN = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef]+"
)
_TAG_ASCII = {c: chr(c - 0xE0000) for c in range(0xE0020, 0xE007F)}


def _shown(hidden: re.Match[str]) -> str:
    """What a run of hidden characters reads as: the ASCII of its tag characters, nothing of the rest."""
    return "".join(_TAG_ASCII.get(ord(c), "") for c in hidden.group(0))


# Cyrillic and Greek letters that look like Latin ones (after case folding), read as the Latin letter: a
# pattern is English, so a Russian or Greek word folded this way matches nothing it did not before.
_LOOKALIKES = str.maketrans(
    "\u0430\u0432\u0435\u0455\u0456\u0458\u043a\u043c\u043d\u043e\u0440\u0441\u0442\u0443\u0445"
    "\u04bb\u04cf\u0501\u051b\u051d\u03b1\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7",
    "abesijkmhopctyxhldqwaikvoptux",
)
_NON_LATIN_LOOKALIKE = re.compile("[\u0370-\u03ff\u0400-\u052f]")

_PRIOR = r"(?:all\s+|any\s+|the\s+|your\s+|of\s+)*(?:previous|prior|above|earlier|preceding|foregoing|system)"
_ORDERS = r"(?:instructions?|prompts?|rules|directions|directives|guidelines|programming)"


@dataclass(frozen=True, slots=True)
class Pattern:
    name: str
    regex: re.Pattern[str]
    description: str


def _p(name: str, pattern: str, description: str) -> Pattern:
    """Patterns are written in lower case: they run on case-folded text."""
    return Pattern(name, re.compile(pattern), description)


PATTERNS: tuple[Pattern, ...] = (
    _p(
        "ignore_previous_instructions",
        rf"\b(?:ignore|disregard|forget|override)\b\W+(?:\w+\W+){{0,3}}?{_PRIOR}\W+"
        rf"(?:\w+\W+){{0,2}}?{_ORDERS}\b",
        "tells the model to drop the instructions it was given",
    ),
    _p(
        "reveal_system_prompt",
        r"\b(?:reveal|show|print|repeat|output|leak|dump|display|disclose|tell\s+me)\b\W+(?:\w+\W+){0,4}?"
        r"(?:your\s+(?:system|hidden|secret|initial|original)\s+(?:prompt|instructions|message)"
        r"|the\s+(?:hidden|secret)\s+(?:prompt|instructions))\b"
        r"|\bwhat\s+(?:is|are|was|were)\s+your\s+(?:system|hidden|secret|initial|original)\s+"
        r"(?:prompt|instructions)\b",
        "asks the model for its hidden system prompt",
    ),
    _p(
        "jailbreak_persona",
        r"\b(?:you\s+are\s+now|act\s+as|pretend\s+(?:to\s+be|you\s+are)|from\s+now\s+on\s+you\s+are)\W+"
        r"(?:\w+\W+){0,3}?(?:dan|jailbroken|unfiltered|uncensored|evil|amoral)\b"
        r"|\b(?:dan|jailbreak)\s+mode\b|\bwith\s+developer\s+mode\s+(?:enabled|activated)\b"
        r"|\bdo\s+anything\s+now\b",
        "switches the model into a persona without its rules (DAN and the like)",
    ),
    _p(
        "chat_template_tokens",
        r"<\|(?:im_start|start_header_id)\|>\s*(?:system|assistant)|<\|system\|>|<<sys>>"
        r"|\[inst\].{0,2000}?\[/inst\]",
        "smuggles chat-template control tokens to fake a system turn",
    ),
    _p(
        "new_instructions",
        # at the start of the text, of a sentence or after a list, quote or heading mark: the text is
        # normalised, so a line's start is no longer seen as one
        r"(?:^|[.!?:;\-*#>|]\s)\W*(?:new|updated|real)\s+(?:system\s+)?instructions\s*:"
        r"|\bsystem\s*(?:override|prompt)\s*:",
        "announces replacement system instructions inside user content",
    ),
)


def normalise(text: str) -> str:
    """NFKC, tag characters read as ASCII, without invisible characters, whitespace runs as one space,
    case-folded, Cyrillic and Greek lookalikes as Latin letters. (Spelt for speed on long prompts: `split`
    and `join` collapse whitespace, the same characters `\\s` matches, ~5x faster than a regular
    expression; the usual prompt is ASCII and skips the rest.)"""
    if text.isascii():
        return collapsed(text).casefold()
    text = unicodedata.normalize("NFKC", text)
    text = _HIDDEN.sub(_shown, text)
    folded = collapsed(text).casefold()
    return folded.translate(_LOOKALIKES) if _NON_LATIN_LOOKALIKE.search(folded) else folded


def collapsed(text: str, *, chunk: int = COLLAPSE_CHARS) -> str:
    """`" ".join(text.split())`, `chunk` characters at a time: the list `split` makes costs ~60 bytes a word
    (a max-size body of prose took ~100 MiB for ~8 MB of text, for the moment of the scan); a word cut by a
    chunk's end is glued back."""
    if len(text) <= chunk:
        return " ".join(text.split())
    out: list[str] = []
    inside = False  # the chunk before ended inside a word
    for start in range(0, len(text), chunk):
        piece = text[start : start + chunk]
        words = " ".join(piece.split())
        if not words:
            inside = False
            continue
        if out and not (inside and not piece[0].isspace()):
            out.append(" ")
        out.append(words)
        inside = not piece[-1].isspace()
    return "".join(out)


def _combined(patterns: tuple[Pattern, ...]) -> re.Pattern[str]:
    """One alternation of every rule as a named group: one scan of the text instead of one per rule."""
    return re.compile("|".join(f"(?P<{p.name}>{p.regex.pattern})" for p in patterns))


_ALL = _combined(PATTERNS)


def first_match(text: str, patterns: tuple[Pattern, ...] = PATTERNS) -> Pattern | None:
    """The rule of the leftmost match in the text, if any."""
    return _search(_ALL if patterns is PATTERNS else _combined(patterns), patterns, text)


def _search(combined: re.Pattern[str], patterns: tuple[Pattern, ...], text: str) -> Pattern | None:
    m = combined.search(normalise(text))
    if m is None:
        decoded = json_strings(text)  # a JSON text is read as a model reads it: through its escapes
        m = combined.search(normalise(decoded)) if decoded is not None else None
    if m is None:
        return None
    return next(p for p in patterns if p.name == m.lastgroup)


def json_strings(text: str) -> str | None:
    """The strings (keys and values) of a JSON text, a line each, when it is JSON with a string in it
    (an agent's tool result: `json.dumps` writes a page's newlines as `\\n` and non-ASCII as `\\uXXXX`,
    which hide words from a pattern); else None."""
    if text.lstrip()[:1] not in ("{", "[", '"') or "\\" not in text:
        return None  # without a backslash its strings read as the text does
    try:
        value = json.loads(text)
    except ValueError:
        return None
    out: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            out.extend(k for k in v if isinstance(k, str))
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, list):
            stack.extend(reversed(v))
    return "\n".join(out) if out else None


class PromptInjection:
    """Refuses a prompt whose user or tool messages match a pattern (400 `prompt_injection_detected`)."""

    name = "prompt_injection"

    def __init__(self, patterns: tuple[Pattern, ...] = PATTERNS) -> None:
        self.patterns = patterns
        self._combined = _ALL if patterns is PATTERNS else _combined(patterns)
        self._clean: OrderedDict[bytes, None] = OrderedDict()  # digests of long texts found clean

    def on_input(self, messages: list[ChatMessage]) -> tuple[list[ChatMessage], list[Finding]]:
        for message in messages:
            if message.role not in CHECKED_ROLES:
                continue
            hit = self._match(message.text())
            if hit is not None:
                raise Refusal(
                    guardrail=self.name,
                    rule=hit.name,
                    code="prompt_injection_detected",
                    message=f"The prompt was refused by the prompt-injection guardrail (rule {hit.name}: "
                    f"{hit.description}).",
                )
        return messages, []

    def on_tools(
        self, tools: list[ToolSpec], messages: list[ChatMessage]
    ) -> tuple[list[ToolSpec], list[Finding]]:
        """Each tool's description and schema (an MCP server's tool is a third party's text, as a tool
        result is), read as one text (remembered when long and clean, as an agent resends its tools every
        turn); a refusal names the first of its texts that matches alone, else the tool."""
        for n, tool in enumerate(tools):
            texts = list(tool_texts(n, tool, keys=True))
            hit = self._match("\n".join(text for _, text in texts)) if texts else None
            if hit is None:
                continue
            spot = next((s for s, text in texts if _search(self._combined, self.patterns, text)), None)
            raise Refusal(
                guardrail=self.name,
                rule=hit.name,
                code="prompt_injection_detected",
                message=f"A tool definition was refused by the prompt-injection guardrail (rule {hit.name}: "
                f"{hit.description}).",
                tool=spot or ToolSpot(n),
            )
        return tools, []

    def _match(self, text: str) -> Pattern | None:
        if len(text) < REMEMBER_CHARS:
            return _search(self._combined, self.patterns, text)
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest in self._clean:
            self._clean.move_to_end(digest)
            return None
        hit = _search(self._combined, self.patterns, text)
        if hit is None:
            self._clean[digest] = None
            if len(self._clean) > REMEMBERED:
                self._clean.popitem(last=False)
        return hit
