"""The semantic cache's guard: what of a prompt's text the embedding barely sees and the answer depends
on. MiniLM puts "How much older is X than Y?" 0.97 from "...younger...", "Convert kilometers into miles"
0.99 from "Convert miles to kilometers" and "Give me five ideas" 0.95 from "...ten ideas": a threshold
cannot part them, and a cached answer to another question is the worst answer a cache can give.

`literals` is part of the semantic scope (a neighbour must have the same), so it must read senses, not
words: a paraphrase keeps them ("Is X quicker than Y?" is "Is X faster than Y?"), another question
changes one. A rule that reads too much costs a miss (the model is asked), one that reads too little
serves a wrong answer; the lists lean to the first. `reordered` is checked against the neighbour found.
Measured on paraphrases and confusions by `bench/semantic_guard_bench.py`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any


def _words(text: str) -> list[str]:
    return text.split()


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_WORD = re.compile(r"\w+")
_WHEN = re.compile(r"\b(?:today|tonight|tomorrow|yesterday)\b", re.IGNORECASE)
# "not safe" and "unsafe" are one question: a word negated by its prefix counts as a negation.
_PREFIXED = _words(
    "unsafe illegal impossible unhealthy unethical invalid incorrect unable unlikely disagree dislike "
    "inappropriate unnecessary untrue unimportant insecure invisible unusual uncommon unfair unhappy "
    "inactive incomplete inaccurate unreliable unstable unsupported unavailable disallowed irrelevant "
    "immoral improper insufficient inefficient ineffective unlawful unclear unsure uncertain unofficial "
    "unnatural unacceptable uncomfortable irresponsible unknown unwanted unlimited unsafely illegally "
    "nonexistent unpopular unsuitable unhelpful"
)
_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nor|neither|nothing|nobody|nowhere|cannot|without|"
    + "|".join(_PREFIXED)
    + r")\b|n['\u2019]t\b",
    re.IGNORECASE,
)
# Numbers written as words are numbers ("five" is 5; "one" is left out: "which one", "one of").
_NUMBER_WORDS = {
    w: str(n)
    for n, w in enumerate(
        _words(
            "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen twenty"
        )
    )
    if w != "_"
} | {
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
    "ninety": "90", "hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000",
    "dozen": "12", "second": "2", "third": "3", "fourth": "4", "fifth": "5", "sixth": "6", "seventh": "7",
    "eighth": "8", "ninth": "9", "tenth": "10", "twice": "2", "double": "2", "triple": "3", "half": "0.5",
}  # fmt: skip
_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)

# Operators, as a sequence: "+" and "-" in "x+1" and "x-1" (a hyphen inside a word, a slash between
# words, are not operators: `_HYPHENED`).
_OPERATOR = re.compile(
    r"(==|!=|<=|>=|&&|\|\||\*\*|->|=>)"  # never prose
    r"|(?<=\w)(\+\+|--)|(\+\+|--)(?=\w)"  # i++, --hard
    r"|(?<=[\w)\]])([-+*/^%=<>])(?=[\w(\[])"  # x+1, 12*4 (a hyphen inside a word is not: `_HYPHENED`)
    # 7 > 3, x + 5: spaced, beside a number (not prose's " - ")
    r"|(?<=\d)\s([-+*/^%=<>])\s(?=[\w(])|(?<=[\w)])\s([-+*/^%=<>])\s(?=\d)"
    r"|\b(plus|minus|times|multiplied|divided)\b",
    re.IGNORECASE,
)
_SAID = {"plus": "+", "minus": "-", "times": "*", "multiplied": "*", "divided": "/"}
_HYPHENED = re.compile(r"(?<=[A-Za-z])[-/](?=[A-Za-z])")
# Quoted text and code is another question when it differs at all. An apostrophe inside a word ("what's",
# "water's") opens no quote: a quote opens after a space or a bracket and closes before one.
_FENCED = re.compile(r"```.*?```", re.DOTALL)
_QUOTED = re.compile(
    r"`([^`]+)`|(?<![\w'])'([^'\n]+?)'(?![\w])|\"([^\"\n]+)\"|\u201c([^\u201d\n]+)\u201d|\u2018([^\u2019\n]+)\u2019"
)
# Sides of opposites, each a sense and the words that say it (synonyms share a sense, so a paraphrase
# keeps it). A word of either side alone already tells its prompt from one that has none, so a side need
# not be complete; words too common in another use are left out (up in "set up", right, start, open).
_SENSES = """
older: old older oldest elder eldest elderly senior seniors
younger: young younger youngest youth junior juniors
adults: adult adults grownup grownups
children: child children kid kids toddler toddlers teen teens teenager teenagers
experts: expert experts advanced professional professionals
beginners: beginner beginners novice novices newbie newbies dummies introductory
male: man men male males boy boys masculine
female: woman women female females girl girls feminine lady ladies
before: before prior beforehand
after: after afterwards afterward
early: early earlier earliest sooner soonest
late: late later latest
first: first initial beginning
last: last final ending end
next: next subsequent
previous: previous preceding
more: big bigger biggest large larger largest huge greater greatest max maximum maximal maximize maximise
  most more increase increases increased increasing
less: small smaller smallest tiny less least fewer fewest min minimum minimal minimize minimise decrease
  decreases decreased decreasing reduce reduces reduced reducing
high: high higher highest tall taller tallest top above upper
low: low lower lowest bottom below beneath underneath
long: long longer longest lengthy
short: short shorter shortest brief
fast: fast faster fastest quick quicker quickest quickly rapid rapidly
slow: slow slower slowest slowly
expensive: expensive pricey pricier priciest costly
cheap: cheap cheaper cheapest inexpensive affordable
hot: hot hotter hottest warm warmer warmest heat heated heating warming
cold: cold colder coldest cool cooler coolest cooling chill chilled freeze freezing frozen
good: good better best excellent
bad: bad worse worst terrible awful
rich: rich richer richest wealthy wealthier wealthiest
poor: poor poorer poorest
pros: pro pros advantage advantages benefit benefits upside upsides strength strengths merit merits
cons: con cons disadvantage disadvantages drawback drawbacks downside downsides weakness weaknesses risk
  risks
safe: safe safer safest safely
dangerous: dangerous danger risky riskier riskiest hazardous harmful
easy: easy easier easiest
hard: hard harder hardest difficult
strong: strong stronger strongest
weak: weak weaker weakest
heavy: heavy heavier heaviest
light: light lighter lightest lightweight
buy: buy buys buying bought buyer buyers purchase purchasing
sell: sell sells selling sold seller sellers
win: win wins won winning winner winners
lose: lose loses lost losing loser losers
import: import imports imported importing
export: export exports exported exporting
download: download downloads downloaded downloading
upload: upload uploads uploaded uploading
send: send sends sending sent sender outgoing outbound
receive: receive receives received receiving receiver incoming inbound
push: push pushes pushed pushing
pull: pull pulls pulled pulling
input: input inputs
output: output outputs
encrypt: encrypt encrypts encrypted encrypting encryption
decrypt: decrypt decrypts decrypted decrypting decryption
encode: encode encodes encoded encoding encoder
decode: decode decodes decoded decoding decoder
compress: compress compresses compressed compressing compression
decompress: decompress decompresses decompressed decompressing decompression unzip
serialize: serialize serialise serializes serialized serializing serialization marshal
deserialize: deserialize deserialise deserializes deserialized deserializing deserialization unmarshal
enable: enable enables enabled enabling activate
disable: disable disables disabled disabling deactivate
install: install installs installed installing installation
uninstall: uninstall uninstalls uninstalled uninstalling
lock: lock locks locked locking
unlock: unlock unlocks unlocked unlocking
include: include includes included including
exclude: exclude excludes excluded excluding
add: add adds added adding append appending insert inserts inserted inserting insertion
remove: remove removes removed removing delete deletes deleted deleting deletion
ascending: ascending ascend
descending: descending descend
rise: rise rises rising rose upward upwards
fall: fall falls falling fell downward downwards
positive: positive
negative: negative
true: true
false: false
north: north northern
south: south southern
east: east eastern
west: west western
inside: inside inner internal interior indoor indoors
outside: outside outer external exterior outdoor outdoors
past: past
future: future
morning: morning mornings
afternoon: afternoon afternoons
evening: evening evenings
night: night nights nighttime
daytime: daytime
summer: summer
winter: winter
spring: spring
autumn: autumn
wet: wet wetter
dry: dry drier dryer
accept: accept accepts accepted accepting
reject: reject rejects rejected rejecting
allow: allow allows allowed allowing permit permitted
deny: deny denies denied forbid forbidden prohibit prohibited ban banned
pass: pass passes passed passing
fail: fail fails failed failing failure
love: love loves loved
hate: hate hates hated
happy: happy happier happiest glad
sad: sad sadder saddest
against: against anti oppose opposes opposed opposing opponent opponents
similar: similar similarity similarities alike
different: different difference differences differ differs
"""
SENSES: dict[str, str] = {
    word: sense
    for line in re.sub(r"\n +", " ", _SENSES).strip().splitlines()
    for sense, words in [line.split(":", 1)]
    for word in words.split()
}
_NEGATED_BASE = {
    w: base for w in _PREFIXED for base in [re.sub(r"^(?:un|in|im|il|ir|dis|non)", "", w)] if base in SENSES
}
# "how old", "how long", "how fast": the neutral question asks for neither side.
_NEUTRAL_AFTER = frozenset({"how"})
# Words a conversion's terms are looked for around (`X to Y`): they turn one thing into another.
_CONVERTS = frozenset(
    _words(
        "convert converts converting conversion converter translate translates translating translation "
        "translator transform transforms transforming cast casting change changing turn turning "
        "transpile compile"
    )
)
# Skipped when a direction's or a comparison's term is looked for: they name no term.
_FILLER = frozenset(
    _words(
        "a an the my your his her its our their this that these those some any each every one how to into "
        "from in is are there do does can i you we it of for and or way"
    )
)


def literals(text: str) -> dict[str, Any]:
    """What of a prompt's text the embedding barely sees and the answer depends on: its numbers, in order
    ("What is 17*23?" and "...17*24?" are 0.91 apart to MiniLM; "1,000" is 1000; "five" is 5), how many
    negations it has ("Is it safe to...?" and "Is it not safe to...?": 0.99), the days it names ("...in
    Paris today?" and "...tomorrow?": 0.95), and (when it has any, so that other prompts' scopes stay as
    they were) the senses of its opposite words, what it compares against, its conversions' directions,
    its operators ("7 > 3" and "7 < 3": 0.91; "x+1" and "x-1") and what it quotes or marks as code, word
    for word ("Is 'She go to school' correct?" and "...'She goes...'": 0.97)."""
    plain = _THOUSANDS.sub("", text)
    words = [w.lower() for w in _WORD.findall(_ORDINAL.sub(r"\1", plain))]
    found: dict[str, Any] = {
        "numbers": [_NUMBER_WORDS.get(w, w) for w in words if _NUMBER.fullmatch(w) or w in _NUMBER_WORDS],
        "negations": len(_NEGATION.findall(plain)),
        "days": [w.lower() for w in _WHEN.findall(plain)],
    }
    extra = {
        "senses": senses(words),
        "compared": compared(words),
        "directions": directions(words),
        "operators": operators(plain),
        "quoted": [" ".join(q.split()) for q in _quoted(text)],
    }
    found.update({name: value for name, value in extra.items() if value})
    return found


def operators(text: str) -> list[str]:
    """The text's operators in order, said in words or in symbols ("17 times 23" is "17 * 23")."""
    found = (next(g for g in m.groups() if g) for m in _OPERATOR.finditer(_HYPHENED.sub(" ", text)))
    return [_SAID.get(o.lower(), o) for o in found]


def _quoted(text: str) -> list[str]:
    """The spans in quotes or backticks (a fenced block first, so its inner backticks are its own)."""
    fenced = _FENCED.findall(text)
    rest = _FENCED.sub(" ", text)
    return fenced + [next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(rest)]


def senses(words: list[str]) -> list[str]:
    """The sides of opposites the words name, sorted (a moved clause keeps them): "older" and "younger"
    are two questions, "pros and cons" and "advantages and disadvantages" one."""
    found: list[str] = []
    for n, word in enumerate(words):
        if n > 0 and words[n - 1] in _NEUTRAL_AFTER:
            continue
        if word in SENSES:
            found.append(SENSES[word])
        elif word in _NEGATED_BASE:  # "unsafe" is "not safe": a negation (counted) of "safe"'s sense
            found.append(SENSES[_NEGATED_BASE[word]])
    return sorted(found)


def compared(words: list[str]) -> list[str]:
    """What each comparison is made against ("faster than Java"), with its comparative when no sense
    names one ("terser than Go"): "Is Python faster than Java?" is not "Is Java quicker than Python?"."""
    out: list[str] = []
    for n, word in enumerate(words):
        if word != "than":
            continue
        after = _term(words, n + 1, step=1)
        clause = words[max(0, n - 4) : n]
        named = any(w in SENSES for w in clause)  # "older ... than": its sense is read already
        adjective = clause[-1] if clause and not named and clause[-1].endswith("er") else ""
        out.append(f"{adjective}>{after or ''}")
    return sorted(out)


def directions(words: list[str]) -> list[str]:
    """The conversions the words ask for, each as `from>to`, whatever the phrasing: "X to Y" and "X into
    Y" (in a prompt that converts, translates, turns...), "from X to Y" and "to Y from X" (in any
    prompt), "how many Y in a X"."""
    out: set[str] = set()
    converts = any(w in _CONVERTS for w in words)
    for n, word in enumerate(words):
        if word in ("to", "into"):
            target = _term(words, n + 1, step=1)
            origin = _origin_after(words, n + 1)
            if origin is None and (converts or "from" in words[max(0, n - 4) : n]):
                origin = _term(words, n - 1, step=-1)
            if origin and target:
                out.add(f"{origin}>{target}")
        elif word == "many" and n > 0 and words[n - 1] == "how":
            unit, whole = _term(words, n + 1, step=1), _whole(words, n + 1)
            if unit and whole:
                out.add(f"{whole}>{unit}")
    return sorted(out)


def _whole(words: list[str], start: int) -> str | None:
    """`X` of "how many Y (are there) in a X": a unit's measure ("in a mile", "in one pound")."""
    for n in range(start, min(start + 5, len(words) - 2)):
        if words[n] == "in" and (words[n + 1] in ("a", "an", "one", "each") or words[n + 1].isdigit()):
            return _term(words, n + 1, step=1)
    return None


def _origin_after(words: list[str], start: int) -> str | None:
    """`X` of "to Y from X": a `from` a few words after the target."""
    for n in range(start, min(start + 6, len(words))):
        if words[n] == "from":
            return _term(words, n + 1, step=1)
    return None


def _term(words: list[str], start: int, *, step: int) -> str | None:
    """The first word from `start` (going `step`) that names something (within three words), in the
    singular; None when there is none, or when it is a converting verb itself ("a way to convert")."""
    n = start
    for _ in range(3):
        if not 0 <= n < len(words):
            return None
        word = words[n]
        if word in _CONVERTS:
            return None
        if word not in _FILLER:
            return _singular(word)
        n += step
    return None


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def prompt_words(text: str) -> list[str]:
    """The text's words, lower-cased, in order, each kept as 8 hex digits of a hash (the prompt itself is
    not stored)."""
    return [_hashed(w) for w in _WORD.findall(text.lower())]


def _hashed(word: str) -> str:
    return hashlib.blake2b(word.encode(), digest_size=4).hexdigest()


# Words that name nothing: a frame's fills that differ in these alone are one question ("Where is" and
# "Where's"). Hashed, as a stored prompt's words are.
_STOP = frozenset(
    _hashed(w)
    for w in _words(
        "a an the is are was were be been am s t d ll re ve m do does did can could would should will shall "
        "may might must i me my you your we our it its this that these those there here what whats how to "
        "of in on at for with by from and or but if as so please thanks thank just also some any kindly"
    )
)
FRAME_WORDS = 8  # shared leading and trailing words from which a prompt is a template's fill


def framed(one: list[str], other: list[str]) -> bool:
    """Whether two prompts are the same frame filled otherwise: 8 or more shared leading and trailing words
    (an app's instructions around each customer's message) and, between them, a word that names something
    in one and not in the other. The shared words dilute the difference: MiniLM finds "...Customer
    message: Where is my parcel for order A?" 0.98 from "...order B?", "...cancel my subscription" 0.97
    from "...renew...", and one customer would get the reply written for another. A short paraphrase has
    no such frame."""
    if one == other:
        return False
    head = 0
    while head < min(len(one), len(other)) and one[head] == other[head]:
        head += 1
    tail = 0
    while tail < min(len(one), len(other)) - head and one[-1 - tail] == other[-1 - tail]:
        tail += 1
    if head + tail < FRAME_WORDS:
        return False
    middle = set(one[head : len(one) - tail]) ^ set(other[head : len(other) - tail])
    return bool(middle - _STOP)


def reordered(one: list[str], other: list[str]) -> bool:
    """Whether two prompts are the same words in another order. MiniLM scores "Convert miles to kilometers"
    and "Convert kilometers to miles" 0.989, "Is Python faster than Java?" and "Is Java faster than
    Python?" 0.989: swapped terms are another question. Only exactly the same words count (a paraphrase
    that moves a clause changes a word too: "At sea level, what is water's boiling point?")."""
    return one != other and sorted(one) == sorted(other)
