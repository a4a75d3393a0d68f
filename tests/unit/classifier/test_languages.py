"""Which Latin-script prompts are in another language than English (languages.py)."""

from __future__ import annotations

import pytest

from switchyard.classifier.languages import other_language

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Escribe un poema sobre la lluvia en la ciudad.", "es"),
        ("Resume este texto en dos frases: el consejo se reunió el martes.", "es"),
        ("Peux-tu écrire une histoire pour les enfants sur un chat qui aime la mer ?", "fr"),
        ("Schreibe bitte eine kurze E-Mail an meinen Chef, dass ich morgen nicht komme.", "de"),
        ("Escreva uma função em Python que ordena uma lista de números.", "pt"),
        ("Scrivi una poesia sulla primavera e sui fiori del giardino.", "it"),
        ("Viết một bài thơ về biển và những con thuyền.", "vi"),
        ("Bana İstanbul hakkında kısa bir şiir yaz, lütfen.", "tr"),  # noqa: RUF001 (Turkish's dotless i)
        # agglutinative: 2 function words in 19 (below the 0.15 share the other languages need)
        (
            "Linux'ta 7 günden eski .tmp dosyalarını bulup silen ve kaç dosya silindiğini bir log "  # noqa: RUF001
            "dosyasına yazan bash scripti lazım.",  # noqa: RUF001
            "tr",
        ),
    ],
)
def test_other_languages_are_named(text: str, lang: str) -> None:
    assert other_language(text) == lang


@pytest.mark.parametrize(
    "text",
    [
        "Write a poem about the rain in the city.",
        "What is the derivative of x^3 with respect to x?",
        "def f(x, y):\n    return [z * 2 for z in x if z % y]\n",
        "Find all cosets of the subgroup 4Z of 2Z.\nA. 4Z\nB. 4Z, 2 + 4Z\nC. 2Z\nD. Z\nAnswer:",
        "How much dietary protein should athletes consume per kg bodyweight per day?",
        "Hola",  # too short to tell
        "",
        "请用三句话总结这篇文章的主要内容。",  # another script: the non-ASCII share sends it already
        "SELECT id, name FROM users WHERE created_at > '2024-01-01' ORDER BY name;",
    ],
)
def test_english_code_and_other_scripts_are_not(text: str) -> None:
    assert other_language(text) is None


def test_only_the_start_of_a_long_prompt_is_read() -> None:
    assert (
        other_language("Summarise this article for me please. " * 20 + "el la de que y en los " * 2000)
        is None
    )
