"""Generated reasoning prompts: small logic puzzles of the classic families, in many phrasings.

The public pool's only training rows for `reasoning` are MMLU's formal-logic and fallacy questions (a few
hundred, all multiple choice), so a model learns "reasoning = MMLU". These generators write puzzles whose
answer must be deduced from stated constraints (orderings, swaps, truth-tellers, syllogisms, conditionals,
seating), with varied wording, with or without options: the families that define the label, not the
phrasing of any one benchmark. Deterministic for a given seed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

from switchyard.classifier.dataset import Example

PUZZLE_SOURCE = "switchyard_puzzles"

_NAMES = (
    "Alice", "Bob", "Carmen", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam",
    "Maya", "Noor", "Oscar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yusuf",
)  # fmt: skip
_THINGS = (
    ("books", ("red", "blue", "green", "yellow", "black", "white", "orange")),
    ("cars", ("sedan", "truck", "van", "coupe", "convertible", "minivan", "jeep")),
    ("birds", ("robin", "crow", "owl", "hawk", "finch", "sparrow", "heron")),
    ("houses", ("brick", "wooden", "stone", "glass", "blue", "yellow", "white")),
    ("runners", ("Ana", "Ben", "Chloe", "Dev", "Eve", "Finn", "Gita")),
)
_ITEMS = ("a ball", "a book", "a hat", "a key", "a present", "a scarf", "a map", "a lamp", "a coin")
_CATS = (
    ("cats", "mammals", "animals"), ("roses", "flowers", "plants"), ("pilots", "employees", "adults"),
    ("squares", "rectangles", "polygons"), ("violins", "instruments", "objects"),
    ("novels", "books", "texts"), ("doctors", "graduates", "readers"),
)  # fmt: skip
_ENDINGS = (
    "", "", "", " Explain your reasoning.", " Think it through step by step.", " Justify the answer.",
    " Answer with the letter of the correct option.", " Show how you got there.",
)  # fmt: skip


def _options(rng: random.Random, choices: list[str]) -> str:
    rng.shuffle(choices)
    style = rng.choice(("({l}) {c}", "{l}) {c}", "{l}. {c}"))
    return "\nOptions:\n" + "\n".join(style.format(l="ABCDEFG"[i], c=c) for i, c in enumerate(choices))


def ordering(rng: random.Random) -> str:
    kind, pool = rng.choice(_THINGS)
    n = rng.randint(3, 6)
    objs = rng.sample(pool, n)
    order = objs[:]
    rng.shuffle(order)
    axis = rng.choice((("left", "right"), ("first", "last"), ("oldest", "newest"), ("cheapest", "dearest")))
    clues = []
    for a, b in itertools.pairwise(order):
        clues.append(
            rng.choice(
                (
                    f"The {a} is {'to the left of' if axis[0] == 'left' else 'before'} the {b}.",
                    f"The {b} comes after the {a}.",
                    f"The {a} is somewhere {'left' if axis[0] == 'left' else 'ahead'} of the {b}.",
                )
            )
        )
    rng.shuffle(clues)
    pos = rng.randrange(n)
    ordinal = ("first", "second", "third", "fourth", "fifth", "sixth")[pos]
    intro = rng.choice(
        (
            f"There are {n} {kind} in a row: {', '.join(objs)}.",
            f"{n} {kind} ({', '.join(objs)}) are arranged in a fixed order.",
            f"In a line-up of {n} {kind}, the {', the '.join(objs)} appear exactly once each.",
        )
    )
    question = rng.choice(
        (
            f"Which one is {ordinal} from the {axis[0]}?",
            f"Which of them is in position {pos + 1}?",
            f"What is the {ordinal} item?",
        )
    )
    text = f"{intro} {' '.join(clues)} {question}"
    if rng.random() < 0.5:
        text += _options(rng, [f"The {o}" for o in objs])
    return text


def swaps(rng: random.Random) -> str:
    n = rng.randint(3, 5)
    people = rng.sample(_NAMES, n)
    items = rng.sample(_ITEMS, n)
    verb = rng.choice(("swap", "trade", "exchange"))
    start = "; ".join(f"{p} has {i}" for p, i in zip(people, items, strict=True))
    steps = []
    for k in range(rng.randint(3, 5)):
        a, b = rng.sample(people, 2)
        word = ("First", "Then", "Next", "After that", "Finally")[min(k, 4)]
        steps.append(f"{word}, {a} and {b} {verb} what they hold.")
    who = rng.choice(people)
    text = rng.choice(
        (
            f"At the start of a game, {start}. {' '.join(steps)} What does {who} have at the end?",
            f"{start}. {' '.join(steps)} Who ends up with {rng.choice(items)}?",
        )
    )
    if rng.random() < 0.4:
        text += _options(rng, [i for i in items])
    return text


def truth_tellers(rng: random.Random) -> str:
    n = rng.randint(3, 5)
    people = rng.sample(_NAMES, n)
    lines = [f"{people[0]} {rng.choice(('always lies', 'always tells the truth'))}."]
    for a, b in zip(people[1:], people, strict=False):
        claim = rng.choice(("lies", "tells the truth", "is a liar", "is honest"))
        lines.append(f"{a} says that {b} {claim}.")
    q = rng.choice(
        (
            f"Does {people[-1]} tell the truth?",
            f"Is {people[-1]} lying?",
            "Who among them is a knight, and who is a knave?",
        )
    )
    intro = rng.choice(
        ("", "On an island every person is either a knight (always truthful) or a knave (always lies). ")
    )
    return intro + " ".join(lines) + " " + q


def syllogism(rng: random.Random) -> str:
    a, b, c = rng.choice(_CATS)
    q1 = rng.choice(("All", "Some", "No"))
    q2 = rng.choice(("All", "Some", "No"))
    conclusion = rng.choice((f"some {a} are {c}", f"all {a} are {c}", f"no {a} are {c}"))
    frame = rng.choice(
        (
            "Premise 1: {p1}. Premise 2: {p2}. Conclusion: {c}. Is the argument deductively valid?",
            "{p1}, and {p2}. Does it follow that {c}?",
            'Consider the argument: "{p1}; {p2}; therefore {c}." Valid or invalid?',
            "Given that {p1} and {p2}, must it be true that {c}?",
        )
    )
    return frame.format(p1=f"{q1} {a} are {b}", p2=f"{q2.lower()} {b} are {c}", c=conclusion)


def conditional(rng: random.Random) -> str:
    events = (  # (p, q, not p, not q)
        ("it rains", "the match is cancelled", "it did not rain", "the match was played"),
        ("the alarm rings", "the guards lock the door", "the alarm stayed silent", "the door stayed open"),
        ("Maya studies", "she passes the exam", "Maya did not study", "Maya failed the exam"),
        ("the valve is open", "the tank drains", "the valve is shut", "the tank is still full"),
        ("the light is green", "the cars move", "the light is red", "the cars are standing still"),
        ("the server is down", "the backup starts", "the server is up", "the backup never started"),
    )
    p, q, not_p, not_q = rng.choice(events)
    fact = rng.choice((q, not_q, p, not_p))
    return rng.choice(
        (
            f"If {p}, then {q}. We know that {fact}. What can we conclude, if anything?",
            f"Suppose that whenever {p}, {q}. Today {fact}. Can we deduce whether {p}?",
            f"Rule: if {p} then {q}. Observation: {fact}. Which conclusion is logically justified?",
        )
    )


def seating(rng: random.Random) -> str:
    n = rng.randint(4, 6)
    people = rng.sample(_NAMES, n)
    clues = []
    for _ in range(rng.randint(3, 5)):
        a, b = rng.sample(people, 2)
        clues.append(
            rng.choice(
                (
                    f"{a} sits next to {b}.",
                    f"{a} does not sit next to {b}.",
                    f"{a} sits somewhere to the left of {b}.",
                    f"{a} is in an end seat.",
                    f"Exactly one person sits between {a} and {b}.",
                )
            )
        )
    q = rng.choice(
        (
            f"Who sits in seat {rng.randint(1, n)}?",
            "Which arrangement satisfies all the conditions?",
            f"Can {people[0]} sit in the middle?",
            "How many valid arrangements are there?",
        )
    )
    where = rng.choice(("in a row of seats", "around a round table", "on a bench"))
    return f"{', '.join(people[:-1])} and {people[-1]} sit {where}. {' '.join(clues)} {q}"


def comparison(rng: random.Random) -> str:
    people = rng.sample(_NAMES, rng.randint(3, 5))
    rel = rng.choice(
        (("taller", "shortest"), ("older", "youngest"), ("faster", "slowest"), ("richer", "poorest"))
    )
    clues = [f"{a} is {rel[0]} than {b}." for a, b in itertools.pairwise(people)]
    rng.shuffle(clues)
    q = rng.choice(
        (
            f"Who is the {rel[1]}?",
            f"Is {people[-1]} {rel[0]} than {people[0]}?",
            f"Rank them from {rel[1]} up.",
        )
    )
    return " ".join(clues) + " " + q


GENERATORS: tuple[Callable[[random.Random], str], ...] = (
    ordering,
    swaps,
    truth_tellers,
    syllogism,
    conditional,
    seating,
    comparison,
)


def generate(count: int, *, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        gen = GENERATORS[i % len(GENERATORS)]
        text = gen(rng) + rng.choice(_ENDINGS)
        out.append(
            Example(
                id=f"{PUZZLE_SOURCE}:{i}",
                source=PUZZLE_SOURCE,
                prompt=text.strip(),
                label="reasoning",
                native_label=f"puzzle/{gen.__name__}",
            )
        )
    return out
