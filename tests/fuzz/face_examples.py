"""Valid request bodies of each face, the seeds test_face_bodies.py makes hostile: tools, tool turns,
images and PDFs as data URLs, thinking blocks, cache marks, response formats."""

from __future__ import annotations

import base64

from tests.support import media

PNG = base64.b64encode(media.png(3, 2)).decode()
PDF = base64.b64encode(media.pdf(2)).decode()
PNG_URL, PDF_URL = f"data:image/png;base64,{PNG}", f"data:application/pdf;base64,{PDF}"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
FUNCTION = {"name": "get_weather", "description": "the weather", "parameters": SCHEMA}

CHAT = [
    {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    {
        "model": "auto",
        "max_tokens": 10,
        "temperature": 0.5,
        "stop": ["x"],
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": True,
        "top_logprobs": 2,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": {"type": "object"}},
        },
        "tools": [{"type": "function", "function": FUNCTION}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "reasoning_effort": "low",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
                    {"type": "file", "file": {"file_data": PDF_URL, "filename": "a.pdf"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
    },
]
LEGACY = [
    {"model": "auto", "prompt": "Say this", "max_tokens": 7, "stop": "\n", "n": 1, "logprobs": 2},
    {
        "model": "auto",
        "prompt": ["one prompt"],
        "best_of": 1,
        "presence_penalty": 0.1,
        "user": "u",
        "seed": 2,
    },
]
RESPONSES = [
    {"model": "auto", "input": "hi"},
    {
        "model": "auto",
        "instructions": "be brief",
        "max_output_tokens": 50,
        "stream": True,
        "include": ["message.output_text.logprobs", "reasoning.encrypted_content"],
        "top_logprobs": 2,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
        "tools": [{"type": "function", **FUNCTION}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": PNG_URL, "detail": "auto"},
                    {"type": "input_file", "file_data": PDF_URL, "filename": "a.pdf"},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "abc"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"role": "user", "content": "again"},
        ],
    },
    {
        "model": "auto",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": "required",
        "text": {"format": {"type": "json_object"}},
        "input": [
            {"role": "developer", "content": "x"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c",
                "output": [
                    {"type": "input_text", "text": "r"},
                    {"type": "input_image", "image_url": PNG_URL},
                ],
            },
        ],
    },
]
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
ANTHROPIC = [
    {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
    {
        "model": "auto",
        "max_tokens": 2000,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "5m"}}],
        "stop_sequences": ["x"],
        "stream": True,
        "metadata": {"user_id": "u"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "get_weather", "input_schema": SCHEMA, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    IMAGE,
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                        "title": "t",
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "abc"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "P"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "21"}],
                    }
                ],
            },
        ],
    },
    {
        "model": "auto",
        "max_tokens": 100,
        "tool_choice": {"type": "tool", "name": "f"},
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}},
                ],
            }
        ],
    },
]
GEMINI = [
    {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    {
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "generationConfig": {
            "temperature": 0.5,
            "maxOutputTokens": 20,
            "stopSequences": ["x"],
            "responseMimeType": "application/json",
            "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
            "thinkingConfig": {"thinkingBudget": 100, "includeThoughts": True},
        },
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "OBJECT"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "look"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG}},
                    {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
                ],
            },
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "P"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"r": 1}}}]},
        ],
    },
]
GEMINI_COUNTS = [*GEMINI, {"generateContentRequest": {"model": "models/m", **GEMINI[1]}}]
EMBEDDINGS = [
    {"model": "auto", "input": "hi"},
    {"model": "auto", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 8, "user": "u"},
    {"model": "auto", "input": [[1, 2], [3]]},
]
GEMINI_EMBED = [
    {"content": {"parts": [{"text": "hi"}]}, "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 8}
]
GEMINI_BATCH = [
    {"requests": [{"model": "models/m", "content": {"parts": [{"text": t}]}} for t in ("a", "b")]}
]
MESSAGE_BATCH = [
    {"requests": [{"custom_id": f"r{n}", "params": body} for n, body in enumerate(ANTHROPIC)]},
]
CONVERSATION_ITEMS = [{"items": [item for item in RESPONSES[1]["input"] if item.get("type") != "reasoning"]}]
