"""Guardrails as pure functions: PII found and redacted (by kind, with the validators that keep
look-alikes: Luhn, IBAN check digits, issued SSNs, DNI letters), in every message and text part or refused."""

from __future__ import annotations

import pytest

from switchyard.common.events import ChatMessage, ThinkingBlock
from switchyard.gateway.guardrails.models import PII_KINDS, Finding, Refusal
from switchyard.gateway.guardrails.pii import Pii, luhn, redact

pytestmark = pytest.mark.unit

PII_FOUND = [
    ("mail me at john.doe@example.co.uk please", "email"),
    ("card 4111 1111 1111 1111 exp 12/27", "credit_card"),
    ("card 5500-0000-0000-0004", "credit_card"),
    ("IBAN DE89 3704 0044 0532 0130 00 thanks", "iban"),
    ("IBAN GB82WEST12345698765432", "iban"),
    ("ssn 123-45-6789", "us_ssn"),
    ("dni 12345678Z", "es_dni"),
    ("nie X1234567L", "es_dni"),
    ("call +44 20 7946 0958 now", "phone"),
    ("call (415) 555-2671", "phone"),
    ("iban de89 3704 0044 0532 0130 00", "iban"),  # written in lower case
    ("ssn 123 45 6789", "us_ssn"),  # spaces for dashes
    ("OPENAI_API_KEY=sk-proj-4fT9xQ2mLp8Zr7Vb1Nc6Hd3Jk5Ws0Ye", "api_key"),
    ("key sk-ant-api03-Xy7_Qw9-Lm2Np4Rs6Tu8Vw0Yz1Ab3Cd5", "api_key"),
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "api_key"),
    ("token ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R", "api_key"),
    ("google AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "api_key"),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "api_key"),
    ("slack xoxb-1234567890-abcdefghijk", "api_key"),
    ("mine sy_Ab3dE5gH_0123456789abcdefABCDEF0123456789", "api_key"),  # a Switchyard key
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----", "api_key"),
]
PII_NOT = [
    "card 4111111111111112",  # fails Luhn
    "order 1234567812345678",
    "ref DE89370400440532013001",  # wrong IBAN check digits
    "ssn 666-45-6789",  # never issued
    "dni 12345678A",  # wrong letter
    "the year 2023 had 365 days",
    "id 1234567890",
    "version 1.2.3-456",
    "ISBN 978-3-16-148410-0",
    "timestamp 2024-05-01 12:30:45",
    "price 1,234,567.89",
    "p = 0.4111111111111111",  # a Luhn-valid run of decimals
    "commit 4111111111111111ab9f",  # digits in a hex hash
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "pip install scikit-learn sk-learn-compatible-estimators",
    "the class AKIA is not a key, nor is sk-short",
    "event at 1717171717171717176 ns, user 9753186420975318644",  # Luhn-valid ids no card starts with
    "git remote add origin git@github.com:acme/app.git",  # an SSH remote, not a person's address
]


@pytest.mark.parametrize(("text", "kind"), PII_FOUND)
def test_pii_is_found_and_redacted(text: str, kind: str) -> None:
    clean, counts = redact(text, frozenset(PII_KINDS))
    assert counts == {kind: 1}
    assert f"[REDACTED_{kind.upper()}]" in clean


@pytest.mark.parametrize("text", PII_NOT)
def test_lookalikes_that_fail_validation_are_kept(text: str) -> None:
    assert redact(text, frozenset(PII_KINDS)) == (text, {})


def test_luhn() -> None:
    assert luhn("4111111111111111") and luhn("79927398713") and not luhn("79927398710")


def test_pii_redacts_every_message_and_text_parts_or_refuses() -> None:
    messages = [
        ChatMessage(role="system", content="Support desk"),
        ChatMessage(role="user", content="I am ann@example.org, card 4111 1111 1111 1111"),
        ChatMessage(role="user", content=[{"type": "text", "text": "or bob@example.org"}, {"type": "image"}]),
    ]
    cleaned, found = Pii(mode="redact").on_input(messages)
    assert cleaned[0] is messages[0] or cleaned[0] == messages[0]
    assert cleaned[1].content == "I am [REDACTED_EMAIL], card [REDACTED_CREDIT_CARD]"
    assert cleaned[2].content == [{"type": "text", "text": "or [REDACTED_EMAIL]"}, {"type": "image"}]
    assert found == [Finding("pii", "credit_card", 1), Finding("pii", "email", 2)]
    only_cards = Pii(mode="redact", kinds=frozenset({"credit_card"}))
    assert "ann@example.org" in str(only_cards.on_input(messages)[0][1].content)
    with pytest.raises(Refusal) as refused:
        Pii(mode="refuse").on_input(messages)
    assert refused.value.code == "pii_detected" and "ann@" not in refused.value.message


def _history_with_thinking(text: str) -> list[ChatMessage]:
    blocks = [
        ThinkingBlock(thinking="The user wants the weather.", signature="sig-1"),
        ThinkingBlock(thinking=text, signature="sig-2"),
        ThinkingBlock(type="redacted_thinking", data="ZW5jcnlwdGVk"),
    ]
    return [
        ChatMessage(role="user", content="Weather?"),
        ChatMessage(role="assistant", content="Looking.", thinking=blocks),
        ChatMessage(role="user", content="And?"),
    ]


def test_thinking_blocks_in_the_history_with_pii_are_left_out_whole_never_altered() -> None:
    """A thinking block is signed by its provider: an altered block is refused when it is sent back, so
    one with personal data is left out whole (the adapter then goes on without thinking where a tool
    loop needs it), as the output hooks leave one out of an answer; the others are sent as they were."""
    history = _history_with_thinking("I should mail ann@example.org about it.")
    messages, found = Pii(mode="redact").on_input(history)
    kept = messages[1].thinking or []
    assert [b.signature for b in kept] == ["sig-1", None]  # the block with PII left out, none altered
    assert kept[0] == (history[1].thinking or [])[0] and kept[1].data == "ZW5jcnlwdGVk"
    assert found == [Finding("pii", "email", 1)]
    with pytest.raises(Refusal) as refused:
        Pii(mode="refuse").on_input(history)
    assert refused.value.code == "pii_detected"
    clean = _history_with_thinking("Nothing personal here.")
    assert Pii(mode="redact").on_input(clean) == (clean, [])
