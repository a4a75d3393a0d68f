"""Function names a provider refuses, renamed for the call and named back in its answer. Gemini's API takes
`.` and `:` in a function's name (`ns.get_weather`, `mcp:read`), and the Gemini face passes them on;
OpenAI's chat completions and Responses API (`^[a-zA-Z0-9_-]+$`, at most 64) and Anthropic's Messages API
(`^[a-zA-Z0-9_-]{1,128}$`) refuse the whole request over such a name. Gemini's in turn must begin with a
letter or `_` and hold at most 64 characters, where OpenAI's take a digit first and Anthropic's 128. Each
name a provider refuses goes as its `NameRule` makes it (numbered apart when that is another name of the
call), in the tools, the forced choice and the conversation's calls; the calls the model makes under the
new name come back under the client's."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

from switchyard.common.events import ChatMessage, ToolCall
from switchyard.executor.providers.base import AnswerEnd, ProviderCall, Reply, StreamPart, ToolCallDelta

LONGEST = 64  # OpenAI's and Gemini's bound on a function's name (Anthropic's: 128)


@dataclasses.dataclass(frozen=True)
class NameRule:
    """The names a provider takes (`taken`), and what a name it refuses becomes: each character outside
    `kept` as `_`, `_` before a first character outside `first`, at most LONGEST characters."""

    taken: re.Pattern[str]
    kept: re.Pattern[str]  # one character outside the kept ones
    first: re.Pattern[str] | None = None

    def plain(self, name: str, suffix: str = "") -> str:
        out = self.kept.sub("_", name)
        if self.first is not None and not self.first.match(out):
            out = "_" + out
        return (out[: LONGEST - len(suffix)] + suffix) or "_"


# OpenAI's and Anthropic's: letters, digits, `_` and `-`
PLAIN = NameRule(taken=re.compile(r"[a-zA-Z0-9_-]{1,64}"), kept=re.compile(r"[^a-zA-Z0-9_-]"))
# Gemini's: a letter or `_` first, then letters, digits, `_`, `.`, `:` or `-`
GEMINI = NameRule(
    taken=re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}"),
    kept=re.compile(r"[^A-Za-z0-9_.:-]"),
    first=re.compile(r"[A-Za-z_]"),
)


class ToolNames:
    """The renames of one call: `call` is what goes upstream; `part` and `reply` name its answer back."""

    def __init__(self, call: ProviderCall, rule: NameRule) -> None:
        names = [t.function.name for t in call.tools or ()]
        names += [c.function.name for m in call.messages for c in m.tool_calls or ()]
        self._sent: dict[str, str] = {}  # the client's name -> the name sent
        taken = {n for n in names if rule.taken.fullmatch(n)}
        for name in dict.fromkeys(names):
            if name in taken or name in self._sent:
                continue
            plain, number = rule.plain(name), 2
            while plain in taken:  # another name of the call already: numbered apart
                plain, number = rule.plain(name, f"_{number}"), number + 1
            taken.add(plain)
            self._sent[name] = plain
        self._back = {plain: name for name, plain in self._sent.items()}
        self.call = self._renamed(call) if self._sent else call

    def _renamed(self, call: ProviderCall) -> ProviderCall:
        tools = [
            t.model_copy(
                update={"function": t.function.model_copy(update={"name": self._out(t.function.name)})}
            )
            for t in call.tools or ()
        ]
        return dataclasses.replace(
            call,
            tools=tools if call.tools is not None else None,
            tool_choice=self._choice(call.tool_choice),
            messages=[self._message(m) for m in call.messages],
        )

    def _out(self, name: str) -> str:
        return self._sent.get(name, name)

    def _choice(self, choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if not isinstance(choice, dict) or not isinstance(choice.get("function"), dict):
            return choice
        name = choice["function"].get("name")
        if not isinstance(name, str):
            return choice
        return {**choice, "function": {**choice["function"], "name": self._out(name)}}

    def _message(self, message: ChatMessage) -> ChatMessage:
        update: dict[str, Any] = {}
        if message.tool_calls:
            update["tool_calls"] = [self._call(c, self._out) for c in message.tool_calls]
        if message.role == "tool" and message.name is not None:
            update["name"] = self._out(message.name)
        return message.model_copy(update=update) if update else message

    @staticmethod
    def _call(call: ToolCall, rename: Any) -> ToolCall:
        function = call.function.model_copy(update={"name": rename(call.function.name)})
        return call.model_copy(update={"function": function})

    def _in(self, name: str) -> str:
        return self._back.get(name, name)

    def _calls(self, calls: Any) -> Any:
        return type(calls)(self._call(c, self._in) for c in calls) if calls else calls

    def reply(self, reply: Reply) -> Reply:
        """The reply with its calls (and its other answers') under the client's names."""
        if not self._back:
            return reply
        others = tuple(
            c.model_copy(update={"tool_calls": self._calls(c.tool_calls)}) if c.tool_calls else c
            for c in reply.other_choices
        )
        return dataclasses.replace(reply, tool_calls=self._calls(reply.tool_calls), other_choices=others)

    def part(self, part: StreamPart) -> StreamPart:
        """A streamed part with its call's name (whole in a call's first delta) the client's."""
        if not self._back:
            return part
        if isinstance(part, ToolCallDelta) and part.name is not None:
            return dataclasses.replace(part, name=self._in(part.name))
        if isinstance(part, AnswerEnd):
            return dataclasses.replace(part, tool_calls=self._calls(part.tool_calls))
        if isinstance(part, Reply):
            return self.reply(part)
        return part

    async def parts(self, parts: AsyncIterator[StreamPart]) -> AsyncIterator[StreamPart]:
        async for part in parts:
            yield self.part(part)
