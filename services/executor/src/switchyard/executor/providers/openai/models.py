"""What OpenAI's reasoning models accept in /v1/chat/completions, by family, read from the model name.

OpenAI answers 400 to a field its model refuses, and the executor then falls back after a wasted call.
The client's SDK cannot know which model a request is routed to, so the adapter drops or adjusts what
the routed model would refuse, here, for OpenAI itself only: servers copying its protocol (vLLM, Ollama,
DeepSeek, Groq) take their own fields and get the body as the client asked it.

| family                               | efforts (lowest first)         | default | function tools       |
| ------------------------------------ | ------------------------------ | ------- | -------------------- |
| o1, o3, o3-mini, o4-mini, ...        | low medium high                | medium  | any effort           |
| gpt-5, gpt-5-mini, gpt-5-nano        | minimal low medium high        | medium  | any effort           |
| gpt-5.1                              | none low medium high           | none    | any effort           |
| gpt-5.2, gpt-5.3                     | none low medium high xhigh     | none    | any effort           |
| gpt-5.4 and later 5.x (-mini, -sol)  | none low medium high xhigh     | none    | effort none only (*) |
| gpt-6-*, gpt-6.1-* (luna, sol, ...)  | none low ... xhigh max         | medium  | effort none only (*) |
| gpt-6-astra                          | low ... xhigh max              | medium  | Responses API only   |
| gpt-6.1-sol                          | low ... xhigh (max: Responses) | medium  | Responses API only   |

(*) in chat completions. A call with function tools to a model whose tools are not "any effort" goes
through the Responses API instead (`responses.py`), where tools go with any effort the model takes.

Sampling fields (temperature, top_p, the penalties) go only where the effort in force, the one sent or
else the model's default, is "none": OpenAI's checklist says to remove them otherwise, and the o-series
and gpt-5 have no "none" at all. Token log probabilities (`logprobs`) follow the same rule, but they are
what the client asked to get, not tuning: a call for them goes at effort "none", said out loud, and one
the model cannot serve there (no "none", or a higher effort asked for) is refused before it is sent
(`logprobs_effort`), so the executor tries the next candidate instead of answering without them.

Any other name (gpt-4o, gpt-4.1, fine-tunes, chat-latest aliases, a
variant not listed) has no rules, and its body is sent as the client asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from switchyard.common.events.tasks import ReasoningEffort
from switchyard.executor.providers.base import ProviderCall
from switchyard.executor.providers.errors import provider_error

# Every effort the pipeline knows, weakest first: the order "nearest accepted effort" is measured on.
LADDER: tuple[ReasoningEffort, ...] = ("none", "minimal", "low", "medium", "high", "xhigh", "max")

# "any": tools go with any effort; "effort_none": chat completions refuse tools with any other effort;
# "responses_only": this model takes tools only through /v1/responses. Either way a call with tools goes
# there (`responses.uses_responses`), and these rules then say what chat completions would refuse.
ToolsRule = Literal["any", "effort_none", "responses_only"]


@dataclass(frozen=True, slots=True)
class ModelRules:
    family: str
    efforts: tuple[ReasoningEffort, ...]  # accepted by the model, weakest first
    default_effort: ReasoningEffort  # the effort the model reasons at when none is sent
    tools: ToolsRule = "any"
    responses_efforts: tuple[ReasoningEffort, ...] | None = None  # where /v1/responses takes others

    def nearest(self, asked: ReasoningEffort, *, responses: bool = False) -> ReasoningEffort:
        """The strongest accepted effort not above the one asked (xhigh becomes high on a model without
        xhigh, minimal becomes none on one with none); below every accepted effort, the weakest. With
        `responses`, among the efforts the Responses API takes."""
        efforts = (self.responses_efforts or self.efforts) if responses else self.efforts
        rank = LADDER.index(asked)
        below = [e for e in efforts if LADDER.index(e) <= rank]
        return below[-1] if below else efforts[0]

    def takes_sampling(self, sent: ReasoningEffort | None) -> bool:
        return (sent or self.default_effort) == "none"


_TO_HIGH: tuple[ReasoningEffort, ...] = ("low", "medium", "high")
O_SERIES = ModelRules("o-series", _TO_HIGH, "medium")
GPT_5 = ModelRules("gpt-5", ("minimal", *_TO_HIGH), "medium")
GPT_5_1 = ModelRules("gpt-5.1", ("none", *_TO_HIGH), "none")
GPT_5_2 = ModelRules("gpt-5.2", ("none", *_TO_HIGH, "xhigh"), "none")
GPT_5_4 = ModelRules("gpt-5.4", ("none", *_TO_HIGH, "xhigh"), "none", tools="effort_none")
GPT_6 = ModelRules("gpt-6", ("none", *_TO_HIGH, "xhigh", "max"), "medium", tools="effort_none")
GPT_6_RESPONSES_TOOLS = ModelRules(
    "gpt-6 without none", (*_TO_HIGH, "xhigh", "max"), "medium", "responses_only"
)
# GPT-6.1 Sol in chat completions: effort up to xhigh (max only through the Responses API).
GPT_6_1_SOL = ModelRules(
    "gpt-6.1-sol", (*_TO_HIGH, "xhigh"), "medium", "responses_only", (*_TO_HIGH, "xhigh", "max")
)
WITHOUT_NONE = {("6", "0", "astra"): GPT_6_RESPONSES_TOOLS, ("6", "1", "sol"): GPT_6_1_SOL}
# ("GPT-6 Astra and GPT-6.1 Sol require Responses for tool calling")

_O_SERIES = re.compile(r"o\d+(-[a-z0-9-]+)?")
_GPT = re.compile(
    r"gpt-(?P<major>[56])(\.(?P<minor>\d+))?(-(?P<variant>mini|nano|sol|terra|luna|astra))?(-\d{4}-\d{2}-\d{2})?"
)


def rules_for(model: str) -> ModelRules | None:
    """The rules of an OpenAI model name (a dated snapshot has its model's), or None for a model that
    takes the body as the client sent it."""
    if _O_SERIES.fullmatch(model):
        return O_SERIES
    match = _GPT.fullmatch(model)
    if match is None:
        return None
    major, minor, variant = match["major"], match["minor"], match["variant"]
    if major == "6":
        return WITHOUT_NONE.get((major, minor or "0", variant), GPT_6)
    if minor is None:  # gpt-5 itself: its sol/terra/luna/astra names do not exist
        return GPT_5 if variant in (None, "mini", "nano") else None
    point = int(minor)
    if point >= 4:
        return GPT_5_4
    if point >= 2:
        return GPT_5_2
    return GPT_5_1 if point == 1 else None


def effort_to_send(call: ProviderCall, rules: ModelRules | None) -> ReasoningEffort | None:
    """The `reasoning_effort` to send in chat completions, or None to send none. (A call with function
    tools to a model whose chat completions refuse them, or take them only at effort none, goes through
    the Responses API instead, `responses.uses_responses`, unless it has stop sequences.)"""
    asked = call.reasoning.level() if call.reasoning is not None else None
    if rules is None:
        return asked
    if call.logprobs:
        return logprobs_effort(call.model, rules, asked)
    if call.tools and rules.tools == "effort_none":
        # Tools and stop sequences: only chat completions have stop, and there this model refuses tools
        # at any other effort (its default is not always "none", so it is said even when none was asked)
        return "none"
    return None if asked is None else rules.nearest(asked)


def logprobs_effort(
    model: str, rules: ModelRules, asked: ReasoningEffort | None, *, responses: bool = False
) -> ReasoningEffort:
    """The effort of a call that asks for token log probabilities: "none", the only one at which OpenAI's
    reasoning models return them (sent even when not asked: some default to medium). A model that cannot
    reason at "none", or a call that asks for more, is refused unsent (`bad_request`), naming why."""
    efforts = (rules.responses_efforts or rules.efforts) if responses else rules.efforts
    if "none" not in efforts:
        raise provider_error(
            "bad_request",
            f"openai: {model} returns no token log probabilities (OpenAI's reasoning models return them only "
            "at reasoning effort none, which this model does not take); not sent",
            sent=False,
        )
    if asked is not None and rules.nearest(asked, responses=responses) != "none":
        raise provider_error(
            "bad_request",
            f"openai: {model} returns token log probabilities only at reasoning effort none, and this call "
            f"asks for {asked}; not sent",
            sent=False,
        )
    return "none"


def compatible_effort(asked: ReasoningEffort | None) -> ReasoningEffort | None:
    """The effort for a server copying OpenAI's protocol (vLLM, Ollama, DeepSeek, Groq): the levels they
    know are OpenAI's first ones (vLLM validates low, medium, high), so the efforts GPT-5.2 and GPT-6 added
    step down to `high`, and an explicit "none" is left out, as before GPT-5.1 made it a value."""
    if asked == "none":
        return None
    return "high" if asked in ("xhigh", "max") else asked
