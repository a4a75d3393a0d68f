"""What Gemini's API answers a function declared under a name it refuses (`fake_gemini.py`)."""

from __future__ import annotations

import re
from typing import Any

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")


def name_problem(body: dict[str, Any]) -> str | None:
    """Gemini's message for the first function declaration whose name it refuses, else None."""
    for i, tool in enumerate(body.get("tools") or []):
        for j, declaration in enumerate(tool.get("functionDeclarations") or []):
            if not NAME.fullmatch(str(declaration.get("name", ""))):
                return (
                    f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: Invalid function "
                    "name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), "
                    "underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.\n"
                )
    return None
