"""Cheap lexical features that complement the sentence embedding: shape of the text and cue words.

The list is part of a trained head's contract: changing it means a new FEATURES_VERSION and retraining.
"""

from __future__ import annotations

import math
import re

import numpy as np

from switchyard.classifier import casefold

FEATURES_VERSION = "lex-v1"
_EDGE = 4000  # characters looked at from each end of long prompts


def _cue(*words: str) -> re.Pattern[str]:
    """Case-insensitive in effect: it runs on folded text (casefold.py), faster than with IGNORECASE."""
    return casefold.pattern(r"\b(?:" + "|".join(words) + r")\b")


_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "code_words",
        _cue(
            r"code",
            r"function",
            r"python",
            r"java(?:script)?",
            r"c\+\+",
            r"sql",
            r"bug",
            r"compile",
            r"implement\w*",
            r"class",
            r"method",
            r"api",
            r"script",
            r"regex",
            r"debug\w*",
            r"program\w*",
            r"algorithm",
            r"array",
            r"string",
            r"return",
            r"def",
            r"import",
            r"rust",
            r"golang",
            r"typescript",
            r"html",
            r"css",
            r"json",
            r"unit tests?",
            r"refactor\w*",
        ),
    ),
    (
        "math_words",
        _cue(
            r"calculate",
            r"compute",
            r"solve",
            r"equation",
            r"how many",
            r"how much",
            r"total",
            r"percent(?:age)?",
            r"sum",
            r"product",
            r"integer",
            r"prime",
            r"probability",
            r"derivative",
            r"integral",
            r"theorem",
            r"prove",
            r"polynomial",
            r"matrix",
            r"divisible",
            r"remainder",
            r"average",
            r"ratio",
            r"area",
            r"value of",
            r"[xyz]\s*=",
        ),
    ),
    (
        "reason_words",
        _cue(
            r"if",
            r"then",
            r"therefore",
            r"must be true",
            r"follows?",
            r"deduce\w*",
            r"logic\w*",
            r"valid",
            r"argument",
            r"premises?",
            r"conclusion",
            r"fallacy",
            r"true or false",
            r"which of the following",
            r"order",
            r"left",
            r"right",
            r"swap\w*",
            r"options?",
        ),
    ),
    (
        "write_words",
        _cue(
            r"write",
            r"story",
            r"poem",
            r"essay",
            r"letter",
            r"email",
            r"blog",
            r"article",
            r"compose",
            r"draft",
            r"narrative",
            r"character",
            r"creative",
            r"lyrics",
            r"song",
            r"biography",
            r"speech",
            r"script",
            r"fiction",
            r"describ\w*",
            r"imagine",
        ),
    ),
    (
        "extract_words",
        _cue(
            r"extract\w*",
            r"list all",
            r"find all",
            r"identify",
            r"from the (?:following|text|passage|context)",
            r"context",
            r"passage",
            r"key (?:content|facts|concepts)",
            r"concepts?",
            r"entities",
            r"names?",
            r"dates?",
            r"fields?",
            r"parse",
            r"table",
            r"based on",
        ),
    ),
    (
        "summary_words",
        _cue(
            r"summar\w+",
            r"tl;?dr",
            r"in a nutshell",
            r"main points?",
            r"in brief",
            r"briefly",
            r"in (?:one|two|three|\d) sentences?",
            r"outline",
            r"gist",
            r"condense",
            r"shorten",
            r"key takeaways",
            r"headline",
            r"rephrase",
        ),
    ),
    (
        "qa_words",
        _cue(
            r"what", r"who", r"when", r"where", r"which", r"why", r"how", r"is it", r"does", r"did", r"answer"
        ),
    ),
    (
        "chat_words",
        _cue(
            r"hi",
            r"hello",
            r"hey",
            r"thanks?",
            r"thank you",
            r"you",
            r"your",
            r"you're",
            r"are you",
            r"i'm",
            r"i am",
            r"love",
            r"friend",
            r"bored",
            r"lol",
            r"cool",
            r"nice",
            r"sorry",
            r"good (?:morning|night|evening)",
            r"bye",
            r"funny",
            r"joke",
        ),
    ),
    (
        "coord_words",
        _cue(
            r"then",
            r"after that",
            r"and then",
            r"next",
            r"finally",
            r"first",
            r"tools?",
            r"steps?",
            r"workflow",
            r"pipeline",
            r"agent",
            r"orchestrat\w*",
            r"image",
            r"video",
            r"audio",
            r"generate",
            r"convert",
            r"translate",
            r"detect",
            r"transcribe",
            r"upload",
            r"file",
            r"\.(?:jpg|png|mp3|wav|mp4)",
            r"book",
            r"schedule",
            r"send",
            r"search",
        ),
    ),
)
_ASCII_UPPER = bytes(range(ord("A"), ord("Z") + 1))

_CODE_CHARS = re.compile(r"[{}();=<>\[\]_#$\\|&*^%]")
_FENCE = re.compile(r"```|^\s{4}\S", re.MULTILINE)
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"\w+")
_OPTION = re.compile(r"^\s*\(?[A-Ha-h][.)]\s", re.MULTILINE)
_IMPERATIVE = re.compile(
    r"^\s*(?:please\s+)?(?:write|create|make|generate|build|implement|give|list|explain|"
    r"describe|summari[sz]e|extract|translate|find|calculate|solve|compose|draft|tell|show)\b",
    re.IGNORECASE,
)

NAMES: tuple[str, ...] = (
    *(name for name, _ in _CUES),
    "log_chars",
    "log_words",
    "log_lines",
    "digit_frac",
    "code_char_frac",
    "non_ascii_frac",
    "upper_frac",
    "has_fence",
    "question_marks",
    "ends_question",
    "options",
    "imperative_start",
    "first_person",
    "newline_frac",
)
DIM = len(NAMES)


def lexical(text: str) -> np.ndarray:
    """The feature vector (float32 [DIM]) of one prompt; defined for any string, empty included."""
    if len(text) > 2 * _EDGE:
        text = text[:_EDGE] + "\n" + text[-_EDGE:]
    n = max(len(text), 1)
    words = _WORD.findall(text)
    nw = max(len(words), 1)
    counts, non_ascii, upper = _counts(text)
    out = [min(count / math.sqrt(nw), 5.0) for count in counts]
    stripped = text.rstrip()
    out += [
        math.log1p(len(text)),
        math.log1p(len(words)),
        math.log1p(text.count("\n")),
        len(_DIGIT.findall(text)) / n,
        len(_CODE_CHARS.findall(text)) / n,
        non_ascii / n,
        upper / n,
        1.0 if _FENCE.search(text) else 0.0,
        min(text.count("?"), 5) / 5.0,
        1.0 if stripped.endswith("?") else 0.0,
        min(len(_OPTION.findall(text)), 8) / 8.0,
        1.0 if _IMPERATIVE.search(text) else 0.0,
        1.0 if re.search(r"\b(?:I|I'm|I've|my|me)\b", text) else 0.0,
        text.count("\n") / n,
    ]
    return np.asarray(out, dtype=np.float32)


def _counts(text: str) -> tuple[list[int], int, int]:
    """Matches of each cue, non-ASCII characters, upper-case characters."""
    folded = casefold.fold(text)
    counts = [len(p.findall(folded)) for _, p in _CUES]
    if text.isascii():
        raw = text.encode("ascii")
        return counts, 0, len(raw) - len(raw.translate(None, _ASCII_UPPER))
    return counts, len(text) - len(text.encode("ascii", "ignore")), sum(map(str.isupper, text))


def lexical_matrix(texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.stack([lexical(t) for t in texts])
