"""PII detection with validation, and redaction: each kind is a candidate pattern plus a check that cuts
false positives (Luhn for card numbers, ISO 13616 mod-97 and the country's length for IBANs, the mod-23
letter for Spanish DNI/NIE, the issuing rules for US SSNs, digits in the random part of an API key). A
match becomes `[REDACTED_<KIND>]`.

Phone numbers have no checksum: only international numbers (`+` and 8-15 digits) and North American
numbers written with separators are taken, so plain long numbers (ids, amounts) are left alone.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from switchyard.common.events import ChatMessage, ThinkingBlock, ToolSpec
from switchyard.gateway.guardrails.arguments import screened_calls
from switchyard.gateway.guardrails.models import PII_KINDS, Finding, Refusal
from switchyard.gateway.guardrails.tools import screened_tool, tool_texts

# ISO 13616 lengths of the IBAN countries most seen in practice (an unknown country is refused).
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "AE": 23, "SA": 24, "IL": 23, "BR": 29,
}  # fmt: skip
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(raw: str) -> bool:
    """Luhn, and a first digit some card network issues (2 to 6: Mastercard, Amex, Diners, JCB, Visa,
    Maestro, Discover, UnionPay): a long id or a timestamp in nanoseconds starting 1, 7, 8 or 9 is none."""
    digits = re.sub(r"[ -]", "", raw)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and len(set(digits)) > 1 and luhn(digits)


def _email(raw: str) -> bool:
    """Not an SSH remote's `git@host` (git@github.com:owner/repo): a service's account, not a person's."""
    return not raw.lower().startswith("git@")


def _iban(raw: str) -> bool:
    iban = raw.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rotated = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rotated)) % 97 == 1


def _ssn(raw: str) -> bool:
    area, group, serial = re.split(r"[- ]", raw)
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _dni(raw: str) -> bool:
    value = raw.upper().replace("-", "")
    number = value[:-1]
    if number[0] in "XYZ":  # an NIE: the letter stands for a leading digit
        number = str("XYZ".index(number[0])) + number[1:]
    return _DNI_LETTERS[int(number) % 23] == value[-1]


def _key(raw: str) -> bool:
    """A key's random part has digits (a word such as sk-learn-compatible does not)."""
    return raw.startswith("-----BEGIN") or any(c.isdigit() for c in raw)


def _phone(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    return 8 <= len(digits) <= 15 if raw.startswith("+") else len(digits) == 10


@dataclass(frozen=True, slots=True)
class Detector:
    kind: str
    regex: re.Pattern[str]
    valid: Callable[[str], bool]


DETECTORS: tuple[Detector, ...] = (
    Detector(
        "api_key",
        # A PEM private key; OpenAI's and Anthropic's, Stripe's, AWS access key ids, GitHub's tokens,
        # Google's API keys, Slack's tokens, Switchyard's own. (The lookahead of first characters spares
        # the alternation at most places: ~6 ms on 400,000 characters of code instead of ~65.)
        re.compile(
            r"(?=[-srAgxy])(?:"
            r"-----BEGIN[A-Z ]{0,20}PRIVATE KEY-----[\s\S]{0,16384}?-----END[A-Z ]{0,20}PRIVATE KEY-----"
            r"|\b(?:sk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[A-Za-z0-9_-]{20,}"
            r"|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"
            r"|(?:AKIA|ASIA)[A-Z0-9]{16}\b"
            r"|gh[pousr]_[A-Za-z0-9]{36,}\b|github_pat_[A-Za-z0-9_]{22,}"
            r"|AIza[0-9A-Za-z_-]{35}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,}"
            r"|sy_[A-Za-z0-9]{8}_[A-Za-z0-9]{32}\b))"
        ),
        _key,
    ),
    Detector(
        "email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), _email
    ),
    Detector(
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b", re.IGNORECASE),
        _iban,
    ),
    # Not glued to Latin letters (a hex hash) nor the decimals of a number.
    Detector(
        "credit_card",
        re.compile(r"(?<![0-9A-Za-z_-])(?<!\d\.)\d(?:[ -]?\d){12,18}(?![0-9A-Za-z_-])"),
        _card,
    ),
    Detector("us_ssn", re.compile(r"(?<![\d-])(?<!\d )\d{3}([- ])\d{2}\1\d{4}(?![\d-])(?! \d)"), _ssn),
    Detector("es_dni", re.compile(r"\b[XYZ]?\d{7,8}-?[A-Z]\b", re.IGNORECASE), _dni),
    Detector(
        "phone",
        re.compile(
            r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)"
            r"|(?<![\w(])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?!\w)"
        ),
        _phone,
    ),
)


def redact(text: str, kinds: frozenset[str]) -> tuple[str, dict[str, int]]:
    """The text with every valid match of `kinds` replaced, and how many of each kind were replaced.
    Detectors run in order (IBANs and cards before phones), each on the text the previous ones left."""
    counts: dict[str, int] = {}
    for detector in DETECTORS:
        if detector.kind not in kinds:
            continue

        def sub(m: re.Match[str], d: Detector = detector) -> str:
            if not d.valid(m.group(0)):
                return m.group(0)
            counts[d.kind] = counts.get(d.kind, 0) + 1
            return f"[REDACTED_{d.kind.upper()}]"

        text = detector.regex.sub(sub, text)
    return text, counts


def _redact_message(message: ChatMessage, kinds: frozenset[str], counts: dict[str, int]) -> ChatMessage:
    def one(text: str) -> str:
        clean, found = redact(text, kinds)
        for kind, n in found.items():
            counts[kind] = counts.get(kind, 0) + n
        return clean

    update: dict[str, object] = {}
    if isinstance(message.content, str):
        update["content"] = one(message.content)
    elif isinstance(message.content, list):
        update["content"] = [
            {**part, "text": one(part["text"])}
            if part.get("type") == "text" and isinstance(part.get("text"), str)
            else part
            for part in message.content
        ]
    if message.tool_calls:  # an assistant turn's calls go to the provider with the prompt
        update["tool_calls"] = screened_calls(message.tool_calls, one)
    if message.thinking:
        update["thinking"] = _kept_thinking(message.thinking, kinds, counts)
    return message.model_copy(update=update) if update else message


def _kept_thinking(
    blocks: list[ThinkingBlock], kinds: frozenset[str], counts: dict[str, int]
) -> list[ThinkingBlock] | None:
    """An assistant turn's thinking blocks, those with personal data left out whole: a block is signed by
    its provider, which refuses one altered (so it is never redacted in place), and a turn without its
    thinking is one the adapter knows (it goes on without thinking in a tool loop that needs it).
    Encrypted (`redacted_thinking`) blocks cannot be read and are kept."""
    kept: list[ThinkingBlock] = []
    for block in blocks:
        found = redact(block.thinking, kinds)[1] if block.thinking else {}
        for kind, n in found.items():
            counts[kind] = counts.get(kind, 0) + n
        if not found:
            kept.append(block)
    return kept or None


REMEMBERED_TOOLS = 2048  # tool digests a chain remembers clean


class Pii:
    """Redacts PII from every message (mode `redact`) or refuses the prompt (mode `refuse`, 400
    `pii_detected`); with `output`, also redacts the answer."""

    name = "pii"

    def __init__(
        self, *, mode: str, kinds: frozenset[str] = frozenset(PII_KINDS), output: bool = False
    ) -> None:
        self.mode = mode
        self.kinds = kinds
        self.output = output
        self._clean: OrderedDict[bytes, None] = OrderedDict()  # digests of tools found clean

    def on_input(self, messages: list[ChatMessage]) -> tuple[list[ChatMessage], list[Finding]]:
        counts: dict[str, int] = {}
        cleaned = [_redact_message(m, self.kinds, counts) for m in messages]
        if counts and self.mode == "refuse":
            kinds = sorted(counts)
            raise Refusal(
                guardrail=self.name,
                rule=kinds[0],
                code="pii_detected",
                message=f"The prompt contains personal data ({', '.join(kinds)}); this organisation "
                "refuses prompts with personal data.",
            )
        findings = [Finding(self.name, kind, n) for kind, n in sorted(counts.items())]
        return (cleaned if counts else messages), findings

    def on_tools(
        self, tools: list[ToolSpec], messages: list[ChatMessage]
    ) -> tuple[list[ToolSpec], list[Finding]]:
        """Each tool's description and its schema's string values redacted (keys kept, so the schema still
        describes the client's tool), or the prompt refused naming the first place with personal data. A
        tool found clean is remembered by its digest (an agent sends the same ~100 KB of tools every turn:
        tens of ms to screen, under 1 ms to recognise)."""
        counts: dict[str, int] = {}

        def one(text: str) -> str:
            clean, found = redact(text, self.kinds)
            for kind, k in found.items():
                counts[kind] = counts.get(kind, 0) + k
            return clean

        screened: list[ToolSpec] = []
        for n, tool in enumerate(tools):
            digest = hashlib.blake2b(orjson.dumps(tool.function.model_dump()), digest_size=16).digest()
            if digest in self._clean:
                self._clean.move_to_end(digest)
                screened.append(tool)
                continue
            if self.mode == "refuse":
                self._refuse_in(n, tool)
            before = sum(counts.values())
            screened.append(screened_tool(tool, one))
            if sum(counts.values()) == before:
                self._clean[digest] = None
                if len(self._clean) > REMEMBERED_TOOLS:
                    self._clean.popitem(last=False)
        findings = [Finding(self.name, kind, k) for kind, k in sorted(counts.items())]
        return (screened if counts else tools), findings

    def _refuse_in(self, n: int, tool: ToolSpec) -> None:
        for spot, text in tool_texts(n, tool):
            found = redact(text, self.kinds)[1]
            if found:
                kinds = sorted(found)
                raise Refusal(
                    guardrail=self.name,
                    rule=kinds[0],
                    code="pii_detected",
                    message=f"A tool definition contains personal data ({', '.join(kinds)}); this "
                    "organisation refuses prompts with personal data.",
                    tool=spot,
                )

    def on_output(self, text: str) -> tuple[str, list[Finding]]:
        clean, counts = redact(text, self.kinds)
        return clean, [Finding(self.name, kind, n) for kind, n in sorted(counts.items())]
