"""What the gateway does on its event loop with a request body before admission, per face and per worst-case
shape of body: the parse and validation, the task built from it, its size on the bus (`check_fits`), the
default input guardrails and the admission's token estimate. Each body is built up to the body limit
(SWITCHYARD_MAX_BODY_BYTES, ~7.75 MiB by default) from the smallest item of its shape.

    .venv/bin/python bench/parse_cost.py [--limit BYTES] [--cap ITEMS] [--only TEXT] [--profile TEXT]

Prints one row per shape: face, shape, body size, items, outcome (ok or the error code) and the seconds
taken (CPU time of the process, the best of three runs: what a loaded shared machine adds to the wall
time is left out). `--cap 99990`: the largest bodies the limits take (`bounds.MAX_ITEMS`)."""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from parse_faces import (
    SETTINGS,
    anthropic,
    chat,
    embeddings_request,
    fill,
    gemini,
    gemini_embed,
    legacy_completion,
    responses,
)

from switchyard.gateway.errors import APIError

Body = Callable[[int, int | None], tuple[bytes, int]]  # (byte limit, item cap) -> the body, its n


@dataclass(frozen=True)
class Shape:
    face: str
    name: str
    run: Callable[[bytes], Any]
    body: Body


M = '{"model":"auto",'
A = '{"model":"claude-x","max_tokens":1,'
G_TOOL = '"tools":[{"functionDeclarations":[{"name":"f"}]}],'
U = {"role": "user", "content": "a"}
GU = {"role": "user", "parts": [{"text": "a"}]}


class Several(str):
    """Items that go in a body side by side (a call and its answer), already JSON."""


def j(value: Any) -> str:
    return value if isinstance(value, Several) else orjson.dumps(value).decode()


def several(*values: Any) -> Several:
    return Several(",".join(j(v) for v in values))


def items(head: str, item: Callable[[int], Any], tail: str = "]}", *, weight: int = 1) -> Body:
    """A body of `head`, as many JSON `item(n)` as fit under the limit, and `tail`. With a cap, at most
    cap / `weight` (the conversation items, as `bounds` counts them, that one `item` makes)."""
    return lambda limit, cap: fill(
        head, lambda n: j(item(n)), tail, limit=limit, most=None if cap is None else cap // weight
    )


def pairs(
    head: str,
    first: Callable[[int], Any],
    middle: str,
    second: Callable[[int], Any],
    tail: str,
    *,
    weight: int = 2,
) -> Body:
    """`head`, n items of `first`, `middle`, n items of `second`, `tail`: as many as fit under the limit."""

    def body(limit: int, cap: int | None) -> tuple[bytes, int]:
        per = len(j(first(10**6))) + len(j(second(10**6))) + 2
        n = (limit - len(head) - len(middle) - len(tail)) // per
        n = n if cap is None else min(n, cap // weight)
        one = ",".join(j(first(k)) for k in range(n))
        two = ",".join(j(second(k)) for k in range(n))
        return (head + one + middle + two + tail).encode(), n

    return body


def nested(depth: int, kind: str = "object") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "STRING" if kind.isupper() else "string"}
    for _ in range(depth):
        schema = {"type": kind, "properties": {"a": schema}}
    return schema


def call(n: int) -> dict[str, Any]:
    return {"id": f"c{n}", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def fcall(n: int) -> dict[str, Any]:
    return {"type": "function_call", "call_id": f"c{n}", "name": "f", "arguments": "{}"}


def fout(n: int) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": f"c{n}", "output": "a"}


def use(n: int) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{n}", "name": "f", "input": {}}


def result(n: int) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": "a"}


def gcall(n: int, ids: bool = False) -> dict[str, Any]:
    return {"functionCall": {"name": "f", "args": {}, **({"id": f"i{n}"} if ids else {})}}


def ganswer(n: int, ids: bool = False) -> dict[str, Any]:
    return {"functionResponse": {"name": "f", "response": {}, **({"id": f"i{n}"} if ids else {})}}


def role(n: int, other: str) -> str:
    return "user" if n % 2 == 0 else other


def shapes() -> list[Shape]:
    text = {"type": "text", "text": "a"}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    one = M + '"messages":[{"role":"user","content":"a"}],"tools":['
    gemini_one = '{"contents":[{"parts":[{"text":"a"}]}],"tools":[{"functionDeclarations":['
    anthropic_tool = A + '"tools":[{"name":"f","input_schema":{"type":"object"}}],"messages":[' + j(U) + ","
    return [
        Shape("chat", "messages", chat, items(M + '"messages":[', lambda n: U)),
        Shape(
            "chat",
            "empty messages",
            chat,
            items(M + '"messages":[', lambda n: {"role": "user", "content": ""}),
        ),
        Shape(
            "chat",
            "text parts",
            chat,
            items(M + '"messages":[{"role":"user","content":[', lambda n: text, "]}]}"),
        ),
        Shape(
            "chat",
            "image parts",
            chat,
            items(M + '"messages":[{"role":"user","content":[', lambda n: image, "]}]}"),
        ),
        Shape(
            "chat", "tools", chat, items(one, lambda n: {"type": "function", "function": {"name": f"f{n}"}})
        ),
        Shape(
            "chat",
            "tool calls",
            chat,
            pairs(
                M + '"messages":[' + j(U) + ',{"role":"assistant","tool_calls":[',
                call,
                "]},",
                lambda n: {"role": "tool", "tool_call_id": f"c{n}", "content": "a"},
                "]}",
            ),
        ),
        Shape(
            "chat",
            "call turns",
            chat,
            items(
                M + '"messages":[' + j(U) + ",",
                lambda n: several(
                    {"role": "assistant", "tool_calls": [call(n)]},
                    {"role": "tool", "tool_call_id": f"c{n}", "content": "a"},
                ),
                "]}",
                weight=3,
            ),
        ),
        Shape(
            "chat",
            "deep schema x many",
            chat,
            items(
                one, lambda n: {"type": "function", "function": {"name": f"f{n}", "parameters": nested(100)}}
            ),
        ),
        Shape(
            "chat",
            "1M-char text",
            chat,
            lambda L, cap: (
                j({"model": "auto", "messages": [{"role": "user", "content": "a " * 500_000}]}).encode(),
                1,
            ),
        ),
        Shape("responses", "input messages", responses, items(M + '"input":[', lambda n: U)),
        Shape(
            "responses",
            "text parts",
            responses,
            items(
                M + '"input":[{"role":"user","content":[',
                lambda n: {"type": "input_text", "text": "a"},
                "]}]}",
            ),
        ),
        Shape(
            "responses",
            "tools",
            responses,
            items(M + '"input":"a","tools":[', lambda n: {"type": "function", "name": f"f{n}"}),
        ),
        Shape(
            "responses",
            "calls+outputs",
            responses,
            items(M + '"input":[', lambda n: several(fcall(n), fout(n)), weight=2),
        ),
        Shape(
            "responses",
            "turns",
            responses,
            items(
                M + '"input":[', lambda n: {"role": role(n, "assistant"), "content": "a"}, "," + j(U) + "]}"
            ),
        ),
        Shape(
            "responses",
            "call turns",
            responses,
            items(
                M + '"input":[' + j(U) + ",",
                lambda n: several(fcall(n), fout(n), {"role": "assistant", "content": "a"}),
                "," + j(U) + "]}",
                weight=3,
            ),
        ),
        Shape(
            "responses",
            "calls then outputs",
            responses,
            pairs(M + '"input":[' + j(U) + ",", fcall, ",", fout, "]}"),
        ),
        Shape("legacy", "prompt list", legacy_completion, items(M + '"prompt":[', lambda n: "a")),
        Shape("legacy", "token ids", legacy_completion, items(M + '"prompt":[', lambda n: 1)),
        Shape("legacy", "stop list", legacy_completion, items(M + '"prompt":"a","stop":[', lambda n: "a")),
        Shape("embeddings", "texts", embeddings_request, items(M + '"input":[', lambda n: "a")),
        Shape("embeddings", "token ids", embeddings_request, items(M + '"input":[', lambda n: 1)),
        Shape("embeddings", "token lists", embeddings_request, items(M + '"input":[', lambda n: [1])),
        Shape(
            "anthropic",
            "messages",
            anthropic,
            items(
                A + '"messages":[',
                lambda n: {"role": role(n, "assistant"), "content": "a"},
                "," + j(U) + "]}",
            ),
        ),
        Shape(
            "anthropic",
            "text blocks",
            anthropic,
            items(A + '"messages":[{"role":"user","content":[', lambda n: text, "]}]}"),
        ),
        Shape(
            "anthropic",
            "empty blocks",
            anthropic,
            items(
                A + '"messages":[{"role":"user","content":[', lambda n: {"type": "text", "text": ""}, "]}]}"
            ),
        ),
        Shape(
            "anthropic",
            "system blocks",
            anthropic,
            items(A + '"messages":[' + j(U) + '],"system":[', lambda n: text),
        ),
        Shape(
            "anthropic",
            "tools",
            anthropic,
            items(
                A + '"messages":[' + j(U) + '],"tools":[',
                lambda n: {"name": f"f{n}", "input_schema": {"type": "object"}},
            ),
        ),
        Shape(
            "anthropic",
            "tool use+results",
            anthropic,
            pairs(
                anthropic_tool + '{"role":"assistant","content":[',
                use,
                ']},{"role":"user","content":[',
                result,
                "]}]}",
            ),
        ),
        Shape(
            "anthropic",
            "call turns",
            anthropic,
            items(
                anthropic_tool,
                lambda n: several(
                    {"role": "assistant", "content": [use(n)]}, {"role": "user", "content": [result(n)]}
                ),
                weight=4,
            ),
        ),
        Shape("gemini", "contents", gemini, items('{"contents":[', lambda n: GU, weight=2)),
        Shape(
            "gemini",
            "empty parts",
            gemini,
            items('{"contents":[{"role":"user","parts":[', lambda n: {}, "]}]}"),
        ),
        Shape(
            "gemini",
            "text parts",
            gemini,
            items('{"contents":[{"role":"user","parts":[', lambda n: {"text": "a"}, "]}]}"),
        ),
        Shape("gemini", "declarations", gemini, items(gemini_one, lambda n: {"name": f"f{n}"}, "]}]}")),
        Shape(
            "gemini",
            "calls+responses",
            gemini,
            pairs(
                "{" + G_TOOL + '"contents":[' + j(GU) + ',{"role":"model","parts":[',
                gcall,
                ']},{"role":"user","parts":[',
                ganswer,
                "]}]}",
            ),
        ),
        Shape(
            "gemini",
            "deep schema x many",
            gemini,
            items(gemini_one, lambda n: {"name": f"f{n}", "parameters": nested(100, "OBJECT")}, "]}]}"),
        ),
        Shape(
            "gemini",
            "turns",
            gemini,
            items(
                '{"contents":[',
                lambda n: {"role": role(n, "model"), "parts": [{"text": "a"}]},
                "," + j(GU) + "]}",
                weight=2,
            ),
        ),
        Shape(
            "gemini",
            "call turns",
            gemini,
            items(
                "{" + G_TOOL + '"contents":[' + j(GU) + ",",
                lambda n: several(
                    {"role": "model", "parts": [gcall(n)]}, {"role": "user", "parts": [ganswer(n)]}
                ),
                weight=4,
            ),
        ),
        Shape(
            "gemini",
            "calls with ids",
            gemini,
            pairs(
                "{" + G_TOOL + '"contents":[' + j(GU) + ',{"role":"model","parts":[',
                lambda n: gcall(n, True),
                ']},{"role":"user","parts":[',
                lambda n: ganswer(n, True),
                "]}]}",
            ),
        ),
        Shape(
            "gemini",
            "embed parts",
            gemini_embed,
            items('{"requests":[{"model":"models/m","content":{"parts":[', lambda n: {"text": "a"}, "]}}]}"),
        ),
    ]


def measure(shape: Shape, limit: int, *, cap: int | None, profile: bool) -> tuple[int, int, str, float]:
    body, items = shape.body(limit, cap)
    best = float("inf")
    outcome = "ok"
    for _ in range(1 if profile else 3):
        profiler = cProfile.Profile() if profile else None
        started = time.process_time()
        try:
            if profiler is not None:
                profiler.runcall(shape.run, body)
            else:
                shape.run(body)
        except APIError as exc:
            outcome = f"{exc.status} {exc.code}"
        except RecursionError:
            outcome = "RecursionError"
        best = min(best, time.process_time() - started)
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return len(body), items, outcome, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=SETTINGS.max_body_bytes)
    parser.add_argument("--only", default="")
    parser.add_argument("--profile", default="")
    parser.add_argument("--scale", action="store_true", help="also a quarter-size body: the time's growth")
    parser.add_argument(
        "--cap", type=int, default=None, help="at most this many conversation items (bounds.MAX_ITEMS counts)"
    )
    args = parser.parse_args()
    print("| face | shape | body bytes | items | outcome | seconds |\n|---|---|---|---|---|---|")
    for shape in shapes():
        label = f"{shape.face} {shape.name}"
        if args.only not in label:
            continue
        profile = bool(args.profile) and args.profile in label
        size, items, outcome, took = measure(shape, args.limit, cap=args.cap, profile=profile)
        growth = ""
        if args.scale:
            quarter = measure(shape, args.limit // 4, cap=args.cap, profile=False)[3]
            growth = f" x{took / max(quarter, 1e-6):.1f} of a quarter |"
        print(
            f"| {shape.face} | {shape.name} | {size:,} | {items:,} | {outcome} | {took:.3f} |{growth}",
            flush=True,
        )


if __name__ == "__main__":
    main()
