"""The request shapes Claude Code (2.1.x) sends to `/v1/messages`, as captured from the real client through a
logging proxy (trimmed: its system prompt and 24 tool definitions are ~75 KB), for tests that replay them."""

from __future__ import annotations

from typing import Any

import orjson

HEADERS = {  # besides the key and content type
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
    "prompt-caching-scope-2026-01-05,mid-conversation-system-2026-04-07,effort-2025-11-24",
    "anthropic-dangerous-direct-browser-access": "true",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
}
MARK = {"type": "ephemeral"}
BASH = {
    "name": "Bash",
    "description": "Executes a given bash command",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
        "required": ["command"],
        "additionalProperties": False,
    },
}


def first_turn(*turns: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A first turn as Claude Code sends it: a context reminder and the prompt (cache-marked), then a
    mid-conversation system message (the agent types), with the adaptive thinking it asks for."""
    return {
        "model": "auto",
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "<system-reminder>\nToday's date is 2026-12-06.\n</system-reminder>\n",
                    },
                    {"type": "text", "text": "Say hello", "cache_control": MARK},
                ],
            },
            {"role": "system", "content": "Available agent types for the Agent tool:\n- Explore: search"},
            *turns,
        ],
        "system": [
            {
                "type": "text",
                "text": "x-anthropic-billing-header: cc_version=2.1.197.1c0; cc_entrypoint=sdk-cli;",
            },
            {"type": "text", "text": "You are a Claude agent.", "cache_control": MARK},
        ],
        "tools": [BASH],
        "metadata": {
            "user_id": orjson.dumps({"device_id": "7c56", "account_uuid": "", "session_id": "54"}).decode()
        },
        "max_tokens": 32000,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "stream": True,
        **fields,
    }


def tool_loop(**fields: Any) -> dict[str, Any]:
    """The next request of a tool loop: the first turn, the answer as Claude Code sends it back (its
    thinking block first, when it keeps it: only for a turn whose `model` is the one it asks for), and the
    tool's result, marked for the cache."""
    answer = [
        {"type": "thinking", "thinking": "Run it.", "signature": "sig-1"},
        {"type": "text", "text": "Running it."},
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "echo hi"}},
    ]
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "hi",
        "is_error": False,
        "cache_control": MARK,
    }
    return first_turn(
        {"role": "assistant", "content": answer}, {"role": "user", "content": [result]}, **fields
    )
