"""The response cache's pure parts: keys, scopes, eligibility, directives and per-plan/tenant settings."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.common import vectors
from switchyard.common.events import ChatRequest, EmbeddingRequest, EmbeddingResult
from switchyard.gateway.cache.exact import answer_key, hits_key
from switchyard.gateway.cache.guard import framed, prompt_words, reordered
from switchyard.gateway.cache.models import (
    CacheConfig,
    CacheRule,
    embedding_key,
    exact_key,
    parse_directive,
    point_id,
    semantic_scope,
    semantic_text,
    storable,
    storable_embedding,
)
from switchyard.gateway.cache.service import Configs
from switchyard.gateway.errors import InvalidRequest

pytestmark = pytest.mark.unit
ON = CacheConfig(enabled=True, semantic=True, ttl_s=60, threshold=0.92)


def req(content: Any = "What is the capital of France?", **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "auto", "messages": [{"role": "user", "content": content}], **fields}
    )


def test_the_exact_key_ignores_what_cannot_change_the_answer() -> None:
    base = exact_key("acme", req())
    assert exact_key("acme", req(stream=True)) == base
    assert exact_key("acme", req("  What is the capital of France?\n")) == base
    assert exact_key("acme", req([{"type": "text", "text": "What is the capital of France?"}])) == base
    # extra OpenAI fields the pipeline does not read (`user`) are not part of the request it runs
    assert exact_key("acme", ChatRequest.model_validate({**req().model_dump(), "user": "u1"})) == base
    # nor the grouping hint for the provider's prompt cache: one user's key must not miss another's answer
    assert exact_key("acme", req(prompt_cache_key="user-42")) == base
    assert semantic_scope("acme", req(prompt_cache_key="user-42")) == semantic_scope("acme", req())


@pytest.mark.parametrize(
    "change",
    [
        {"model": "openai/gpt-4o-mini"},
        {"temperature": 0.7},
        {"top_p": 0.5},
        {"max_tokens": 10},
        {"stop": ["\n"]},
        {"seed": 7},
        {"response_format": {"type": "json_object"}},
    ],
)
def test_the_exact_key_changes_with_every_parameter_that_changes_the_answer(change: dict[str, Any]) -> None:
    assert exact_key("acme", req(**change)) != exact_key("acme", req())


def test_keys_and_scopes_are_partitioned_by_tenant() -> None:
    assert exact_key("acme", req()) != exact_key("globex", req())
    assert semantic_scope("acme", req()) != semantic_scope("globex", req())
    assert point_id("acme", "k") != point_id("globex", "k")


def test_the_semantic_scope_is_everything_but_the_user_turn() -> None:
    assert semantic_scope("acme", req("a")) == semantic_scope("acme", req("b"))
    assert semantic_scope("acme", req("a", temperature=1)) != semantic_scope("acme", req("a"))
    system = ChatRequest.model_validate(
        {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "a"}]}
    )
    assert semantic_scope("acme", system) != semantic_scope("acme", req("a"))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("What is 17*23?", "What is 17*24?"),  # MiniLM: 0.906
        ("What year did World War 1 end?", "What year did World War 2 end?"),  # 0.921
        ("Give me 5 ideas for a birthday party", "Give me 10 ideas for a birthday party"),  # 0.973
        ("What is 23-17?", "What is 17-23?"),
        ("Is it safe to eat raw chicken?", "Is it not safe to eat raw chicken?"),  # 0.989
        ("Should I take ibuprofen with alcohol?", "Why shouldn't I take ibuprofen with alcohol?"),
        ("What is the weather in Paris today?", "What is the weather in Paris tomorrow?"),  # 0.953
    ],
)
def test_prompts_that_differ_in_a_number_or_a_negation_never_share_a_semantic_scope(
    one: str, other: str
) -> None:
    """The embedding barely tells these apart (the similarities above, over the 0.92 threshold for most):
    the numbers (in order) and the count of negations of the user turns are part of the scope."""
    assert semantic_scope("acme", req(one)) != semantic_scope("acme", req(other))


def test_paraphrases_with_the_same_numbers_and_negations_share_a_semantic_scope() -> None:
    pairs = [
        ("What's the capital city of France?", "What is the capital of France?"),
        ("What is 17 * 23?", "Compute 17 times 23"),
        ("Convert 1,000 USD to EUR", "convert 1000 usd to eur"),
        ("Don't use jargon: explain DNS", "Explain DNS, do not use jargon"),
    ]
    for one, other in pairs:
        assert semantic_scope("acme", req(one)) == semantic_scope("acme", req(other)), (one, other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # opposites (MiniLM int8 cosine)
        ("How much older is Alice than Bob?", "How much younger is Alice than Bob?"),  # 0.966
        ("Is this movie suitable for adults?", "Is this movie suitable for children?"),
        ("Who is older, Alice or Bob?", "Who is younger, Alice or Bob?"),  # 0.98
        ("What is the maximum dose of ibuprofen for adults?", "...of ibuprofen for children?"),  # 0.94
        ("Is this game appropriate for adults?", "Is this game appropriate for kids?"),
        ("What should I eat before a workout?", "What should I eat after a workout?"),  # 0.931
        ("Sort a list in ascending order in Python", "Sort a list in descending order in Python"),  # 0.947
        ("Should I buy Tesla stock?", "Should I sell Tesla stock?"),  # 0.944
        ("Is coffee good for you?", "Is coffee bad for you?"),  # 0.939
        ("What are the advantages of remote work?", "What are the disadvantages of remote work?"),
        ("What is the first step to learn guitar?", "What is the last step to learn guitar?"),  # 0.952
        ("How do I send an email with Python?", "How do I receive an email with Python?"),  # 0.924
        ("Is it safe to eat raw eggs?", "Is it dangerous to eat raw eggs?"),  # 0.963
        ("Is it legal to record a phone call?", "Is it illegal to record a phone call?"),  # 0.974
        ("What is the time complexity of inserting into a heap?", "...of deleting from a heap?"),
        # comparatives: the opposite, or the other term compared
        ("Is Python faster than Java?", "Is Python slower than Java?"),  # 0.975
        ("Is Python faster than Java?", "Is Java quicker than Python?"),  # 0.975
        ("Is Rust safer than Go?", "Is Rust riskier than Go?"),  # 0.933
        ("Is Rust terser than Go?", "Is Rust wordier than Go?"),
        ("Is it cheaper to fly or drive?", "Is it more expensive to fly or drive?"),  # 0.961
        ("Is it easier to learn Python or Java?", "Is it harder to learn Python or Java?"),  # 0.967
        # a conversion's direction, however it is phrased
        ("Convert kilometers into miles", "Convert miles to kilometers"),  # 0.987
        ("How do I convert a list into a string?", "How do I convert a string to a list?"),  # 0.981
        (
            "Translate from English to German: good morning",
            "Translate into English from German: good morning",
        ),
        ("How many kilometers are in a mile?", "How many miles are in a kilometer?"),  # 0.909
        ("How many kilometers are in a mile?", "Convert kilometers to miles"),
        # operators, and what is quoted or code
        ("Is 7 > 3?", "Is 7 < 3?"),  # 0.912
        ("Fix the bug in: def f(x): return x+1", "Fix the bug in: def f(x): return x-1"),  # 0.914
        ("Solve x + 5 = 12", "Solve x - 5 = 12"),
        ("What does a == b do in Python?", "What does a != b do in Python?"),
        ("What is 17 plus 23?", "What is 17 minus 23?"),
        (
            "Is the sentence 'She go to school' correct?",
            "Is the sentence 'She goes to school' correct?",
        ),  # 0.971
        ("Explain `git reset --hard`", "Explain `git reset --soft`"),
        ('What does "carpe diem" mean?', 'What does "carpe noctem" mean?'),
        # numbers written as words, and ordinals
        ("Give me five ideas for a party", "Give me ten ideas for a party"),  # 0.948
        ("What is the second largest planet?", "What is the largest planet?"),  # 0.908
    ],
)
def test_opposites_comparisons_and_directions_never_share_a_semantic_scope(one: str, other: str) -> None:
    """What the embedding cannot tell apart and the answer depends on, besides numbers and negations: a
    word for one side of an opposite pair (`older`/`younger`, `before`/`after`, `buy`/`sell`...), what a
    comparison is made against (`than Java`), a conversion's direction (`X to/into Y`, `from X`, `how
    many X in a Y`), numbers written as words. A cached answer to another question is the worst answer a
    cache can give."""
    assert semantic_scope("acme", req(one)) != semantic_scope("acme", req(other))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Is Python faster than Java?", "Is Python quicker than Java?"),
        ("Convert miles to kilometers", "Convert miles into kilometers"),
        ("Translate 'good morning' into French", "Translate 'good morning' to French"),
        ("Translate from English to German: good morning", "Translate to German from English: good morning"),
        ("How do I get from the airport to the hotel?", "How do I get to the hotel from the airport?"),
        ("What should I eat before a workout?", "What should I eat before working out?"),
        ("What are the pros and cons of remote work?", "What are the advantages and disadvantages of it?"),
        ("How old is the universe?", "What is the age of the universe?"),
        ("Which is the largest planet?", "What is the largest planet?"),
        ("Give me 5 ideas for a birthday party", "Give me five ideas for a birthday party"),
        ("What is the 2nd largest planet?", "What is the second largest planet?"),
        ("Is it not safe to eat raw chicken?", "Is it unsafe to eat raw chicken?"),
        ("Write a Python function to reverse a string", "Write a python function that reverses a string"),
        ("How long does it take to boil an egg?", "How much time does boiling an egg take?"),
        ("What is 5+3?", "What's 5 + 3?"),
        ("What's the boiling point of water?", "What is water's boiling point?"),  # apostrophes are no quotes
        ("Is the sentence 'She go to school' correct?", "Is 'She go to school' a correct sentence?"),
        ("A state-of-the-art model for and/or logic", "A state of the art model for and or logic"),
    ],
)
def test_paraphrases_keep_sharing_a_semantic_scope(one: str, other: str) -> None:
    """The rules read senses, not words: synonyms of one side share it (`pros`/`advantages`), `to` and
    `into` are one direction, `from` may come first or last, a neutral `how old`/`how long` asks no side,
    `five` is 5 and `not safe` is `unsafe`."""
    assert semantic_scope("acme", req(one)) == semantic_scope("acme", req(other))


@pytest.mark.parametrize(
    ("one", "other", "swapped"),
    [
        ("Convert miles to kilometers", "Convert kilometers to miles", True),  # MiniLM: 0.989
        ("Is Python faster than Java?", "Is Java faster than Python?", True),  # 0.989
        ("Translate 'hello' from English to French", "Translate 'hello' from French to English", True),
        ("What's the capital city of France?", "What is the capital of France?", False),
        (
            "What is the boiling point of water at sea level?",
            "At sea level, what is water's boiling point?",
            False,
        ),
        ("Convert miles to kilometers", "Convert miles to kilometers!", False),
    ],
)
def test_a_semantic_neighbour_may_not_be_the_same_words_in_another_order(
    one: str, other: str, swapped: bool
) -> None:
    """The embedding is nearly blind to word order: the same words with terms swapped are another
    question; a paraphrase changes a word."""
    assert reordered(prompt_words(one), prompt_words(other)) is swapped


FRAME = "Read the customer's message below and write a polite reply of three sentences at most. Message:"


@pytest.mark.parametrize(
    ("one", "other", "refused"),
    [
        (f"{FRAME} Where is my parcel for order A?", f"{FRAME} Where is my parcel for order B?", True),
        (f"{FRAME} Please change my address to London.", f"{FRAME} Please change my address to Paris.", True),
        (f"{FRAME} My order arrived broken.", f"{FRAME} I love the product, will buy again!", True),
        (f"{FRAME} Where is my parcel?", f"{FRAME} Where's my parcel?", False),  # only stop words differ
        ("What is the best way to learn Spanish?", "What's the best way to learn Spanish?", False),
        ("How do I sort a dictionary by value in Python?", "How to sort a dict by value in Python?", False),
        ("Summarize the plot of Hamlet", "Give me a summary of the plot of Hamlet", False),
    ],
)
def test_a_neighbour_that_fills_the_same_long_frame_otherwise_is_another_question(
    one: str, other: str, refused: bool
) -> None:
    """Shared leading and trailing words (8 or more: a template's) dilute what differs between them: the
    embedding finds two customers' messages 0.93-0.98 apart. Differing there in a word that names
    something is another question; a short paraphrase has no such frame."""
    assert framed(prompt_words(one), prompt_words(other)) is refused


def _asked_about(attachment: dict[str, Any], question: str = "What does it say?") -> ChatRequest:
    return req([{"type": "text", "text": question}, attachment])


def _pdf(data: str) -> dict[str, Any]:
    return {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{data}", "filename": "a.pdf"}}


def test_the_same_text_about_another_document_or_image_never_shares_an_answer() -> None:
    """The exact key hashes a turn's PDFs and images whole, and the semantic scope keeps them (only the
    user turns' text is left out of it, to be embedded): the same question about two PDFs (or two images)
    has two keys and two scopes, though the text embedded is the same; about the same PDF it may find a
    paraphrase's answer."""
    one, other = _asked_about(_pdf("JVBERi0xLjQK")), _asked_about(_pdf("JVBERi0xLjcK"))
    assert semantic_text(one, ON) == semantic_text(other, ON) == "What does it say?"
    assert exact_key("acme", one) != exact_key("acme", other)
    assert semantic_scope("acme", one) != semantic_scope("acme", other)
    assert semantic_scope("acme", one) != semantic_scope("acme", req("What does it say?"))
    paraphrase = _asked_about(_pdf("JVBERi0xLjQK"), "What does it tell?")
    assert semantic_scope("acme", paraphrase) == semantic_scope("acme", one)
    images = [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{d}"}} for d in ("AAAA", "BBBB")
    ]
    assert semantic_scope("acme", _asked_about(images[0])) != semantic_scope("acme", _asked_about(images[1]))


def test_semantic_lookups_are_off_for_multi_turn_and_tools_unless_configured() -> None:
    assert semantic_text(req("hello"), ON) == "hello"
    multi = ChatRequest.model_validate(
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "capital of France?"},
            ]
        }
    )
    assert semantic_text(multi, ON) is None
    multi_on = CacheConfig(enabled=True, semantic=True, ttl_s=60, threshold=0.9, semantic_multi_turn=True)
    assert semantic_text(multi, multi_on) == "hi\ncapital of France?"
    tools = req(tools=[{"type": "function", "function": {"name": "f"}}])
    assert semantic_text(tools, ON) is None
    assert semantic_text(req("x"), CacheConfig(enabled=True, semantic=False, ttl_s=1, threshold=0.9)) is None


def test_directives() -> None:
    assert parse_directive(None) == parse_directive("") == parse_directive(" ")
    assert (parse_directive(None).read, parse_directive(None).write) == (True, True)
    assert (parse_directive("no-cache").read, parse_directive("no-cache").write) == (False, True)
    assert (parse_directive("No-Store").read, parse_directive("No-Store").write) == (False, False)
    with pytest.raises(InvalidRequest) as err:
        parse_directive("no-cache, forever")
    assert err.value.status == 400 and err.value.param == "x-switchyard-cache"


@pytest.mark.parametrize(
    ("ours", "standard", "read", "write"),
    [
        (None, "no-cache", False, True),  # RFC 9111: no stored answer without asking again; store the new
        (None, "max-age=0", False, True),
        (None, "No-Store", False, False),
        (None, "no-cache, no-store", False, False),
        (None, "max-age = 0", False, True),
        (None, "max-stale, only-if-cached", True, True),  # nothing an answer cache can honour: left alone
        (None, "", True, True),
        ("no-cache", "no-store", False, False),  # the narrower of the two
        ("no-store", "max-age=60", False, False),
    ],
)
def test_the_standard_cache_control_narrows_the_directive(
    ours: str | None, standard: str, read: bool, write: bool
) -> None:
    directive = parse_directive(ours, standard)
    assert (directive.read, directive.write) == (read, write)


def test_plan_then_tenant_rules_override_the_defaults() -> None:
    configs = Configs(
        ON,
        plans={"free": CacheRule(semantic=False, ttl_s=10)},
        tenants={"acme": CacheRule(enabled=False), "globex": CacheRule(threshold=0.99)},
    )
    assert configs.for_tenant("initech", "pro") == ON
    free = configs.for_tenant("initech", "free")
    assert (free.enabled, free.semantic, free.ttl_s) == (True, False, 10)
    assert not configs.for_tenant("acme", "free").enabled
    assert configs.for_tenant("globex", "free").threshold == 0.99
    assert configs.for_tenant("globex", "free").semantic is False
    with pytest.raises(ValueError):
        CacheRule.model_validate({"ttl": 5})


def test_only_finished_text_answers_are_stored() -> None:
    assert storable(content="Paris", finish_reason="stop", tool_calls=None)
    assert not storable(content="", finish_reason="stop", tool_calls=None)
    assert not storable(content="x", finish_reason="content_filter", tool_calls=None)
    assert not storable(content="x", finish_reason="stop", tool_calls=[{"id": "1"}])


def test_a_cached_answer_settles_the_budget_at_zero() -> None:
    from datetime import UTC, datetime

    from switchyard.common.events import CacheHit, TaskCompleted, Usage
    from switchyard.common.policy import load_policy
    from switchyard.gateway.budgets.pricing import actual_micro

    policy = load_policy(None)
    priced = next(m for m in policy.models if m.output_per_1k > 0)
    done = TaskCompleted(
        task_id="t1",
        tenant_id="acme",
        model=priced.id,
        provider=priced.provider,
        tier=priced.tier,
        content="Paris",
        finish_reason="stop",
        usage=Usage(prompt_tokens=1000, completion_tokens=1000),
        attempts=1,
        latency_ms=1.0,
        completed_at=datetime.now(UTC),
    )
    assert actual_micro(policy, done) > 0
    cached = done.model_copy(update={"cache": CacheHit(kind="exact", source_task_id="t0"), "attempts": 0})
    assert actual_micro(policy, cached) == 0


def emb(
    *texts: str, model: str = "local/all-minilm-l6-v2", dimensions: int | None = None
) -> EmbeddingRequest:
    return EmbeddingRequest(
        model=model, input=list(texts or ("How do I reset my password?",)), dimensions=dimensions
    )


def test_the_embedding_key_is_the_exact_texts_model_and_dimensions_within_the_tenant() -> None:
    base = embedding_key("acme", emb("a", "b"))
    assert embedding_key("acme", emb("a", "b")) == base
    assert len(base) == 64 and int(base, 16) >= 0  # a SHA-256, hex: a safe KV key token
    different = [
        embedding_key("globex", emb("a", "b")),
        embedding_key("acme", emb("b", "a")),  # order: row i is input i's vector
        embedding_key("acme", emb("a")),
        embedding_key("acme", emb("a", "b", "b")),
        embedding_key("acme", emb("a ", "b")),  # never normalised: a near text is another text
        embedding_key("acme", emb("A", "b")),
        embedding_key("acme", emb("ab")),
        embedding_key("acme", emb("a", "b", dimensions=256)),
        embedding_key("acme", emb("a", "b", model="openai/text-embedding-3-small")),
    ]
    assert base not in different and len(set(different)) == len(different)


def test_an_embedding_entry_never_shares_a_key_with_a_chat_answer() -> None:
    text = "What is the capital of France?"
    chat = exact_key("acme", req(text, model="local/all-minilm-l6-v2"))
    embedding = embedding_key("acme", emb(text))
    assert chat != embedding
    assert answer_key("acme", embedding, embedding=True).startswith("e.")
    assert answer_key("acme", chat).startswith("a.")
    # even one hash under both kinds lands on different KV keys, and so do their hit counts
    assert answer_key("acme", chat, embedding=True) != answer_key("acme", chat)
    assert hits_key("acme", chat, embedding=True) != hits_key("acme", chat)
    assert {answer_key("acme", chat), hits_key("acme", chat)}.isdisjoint(
        {answer_key("acme", chat, embedding=True), hits_key("acme", chat, embedding=True)}
    )


def test_only_inline_vectors_are_stored() -> None:
    raw = bytes(4 * 384)
    assert storable_embedding(vectors.pack(raw, count=1, dimensions=384))
    stored = EmbeddingResult(count=1, dimensions=384, sha256="0" * 64, object="acme.task1")
    assert not storable_embedding(stored)
    assert not storable_embedding(None)
