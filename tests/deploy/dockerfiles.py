"""A small Dockerfile reader for the static checks: instructions (continuations joined), grouped by stage."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), " ".join(args.split())))
    if pending:
        raise ValueError("the Dockerfile ends inside a continued line")
    return out


def stages(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs (before the first FROM) and the stages in order."""
    args: dict[str, str] = {}
    result: list[Stage] = []
    for ins in instructions(path.read_text()):
        if ins.keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", ins.args, flags=re.IGNORECASE)
            if m is None:
                raise ValueError(f"cannot read FROM {ins.args!r}")
            result.append(Stage(base=m.group(1), name=m.group(2)))
        elif not result:
            if ins.keyword != "ARG":
                raise ValueError(f"{ins.keyword} before the first FROM")
            name, _, default = ins.args.partition("=")
            args[name] = default
        else:
            result[-1].instructions.append(ins)
    return args, result


def copy_sources(args: str) -> tuple[list[str], str] | None:
    """Sources and destination of a COPY from the build context (None for COPY --from=<stage>)."""
    parts = args.split()
    if any(p.startswith("--from=") for p in parts):
        return None
    parts = [p for p in parts if not p.startswith("--")]
    return parts[:-1], parts[-1]
