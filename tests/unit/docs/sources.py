"""What the documentation says: the names, commands, routes and defaults the docs show a reader, pulled
out of README.md, services/*/README.md, docs/ and deploy/ as plain data for the tests beside this file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"


@dataclass(frozen=True)
class Mention:
    """One name as a doc shows it, and where (for a failing test's message)."""

    name: str
    where: str

    def __str__(self) -> str:
        return f"{self.name} ({self.where})"


def markdown_files() -> list[Path]:
    """The prose a user reads: the README, each service's README, docs/ (asyncapi.yaml is generated)."""
    return [README, *sorted(ROOT.glob("services/*/README.md")), *sorted(ROOT.glob("docs/**/*.md"))]


def deploy_files() -> list[Path]:
    """What an operator runs: docker-compose.yml, the services' images and every file under deploy/."""
    found = [
        ROOT / "docker-compose.yml",
        *sorted(ROOT.glob("services/*/Dockerfile")),
        *sorted(p for p in ROOT.glob("deploy/**/*") if p.is_file()),
    ]
    return [p for p in found if p.suffix in {".yml", ".yaml", ".json", ".conf", ".md", ".Dockerfile", ""}]


@cache
def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def mentions(pattern: re.Pattern[str], files: list[Path]) -> list[Mention]:
    found = []
    for path in files:
        for n, line in enumerate(text(path).splitlines(), 1):
            found.extend(Mention(m.group(1), f"{path.relative_to(ROOT)}:{n}") for m in pattern.finditer(line))
    return found


# a JetStream KV bucket or object store as the docs name one: "the KV bucket `switchyard-tenants`"
_STORE = re.compile(r"(?:bucket|store)s?\s+`(switchyard-[a-z0-9-]*[a-z0-9])`")


def store_mentions() -> list[Mention]:
    return mentions(_STORE, markdown_files())


# a variable's whole name: `SWITCHYARD_SIEM_*` (a family, not a name) ends in `_` and is left out
_ENV = re.compile(r"(?<![\w$])(SWITCHYARD_[A-Z0-9_]*[A-Z0-9])(?![\w*])")


def env_mentions() -> list[Mention]:
    return mentions(_ENV, [*markdown_files(), *deploy_files()])


# a series name as PromQL, a dashboard or prose writes it (`ns:switchyard_x:rate5m` is a recording rule's)
_METRIC = re.compile(r"(?<![\w:.\-/])(switchyard_[a-z0-9_]*[a-z0-9])(?![\w:\-.])")


# `…_files_added_bytes_total` (or `..._heads_swaps_total`) after `switchyard_gateway_files_added_total`
_METRIC_CONTINUED = re.compile(r"(?:…|\.\.\.)(_[a-z0-9_]*[a-z0-9])(?![\w:\-.])")


def metric_mentions() -> list[Mention]:
    """Every metric name the docs and deploy/ write, an abbreviated one (`…_x`) continued from the last
    whole name before it: cut where its first word is in that name, else after its namespace."""
    found = []
    for path in [*markdown_files(), *deploy_files()]:
        base = ""
        for n, line in enumerate(text(path).splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            starts = [(m.start(), m.group(1), True) for m in _METRIC.finditer(line)]
            starts += [(m.start(), m.group(1), False) for m in _METRIC_CONTINUED.finditer(line)]
            for _, name, whole in sorted(starts):
                if whole:
                    base = name
                elif base:
                    first = "_" + name.split("_")[1]
                    namespace = "_".join(base.split("_")[:2])  # `switchyard_consumer`
                    name = (base[: base.rfind(first)] if first in base else namespace) + name
                else:
                    continue
                found.append(Mention(name, where))
    return found


# ---------------------------------------------------------------- the README's configuration table


@dataclass(frozen=True)
class ConfigRow:
    """One row of a configuration table: its variables and the default shown for each (None: the row's
    default cell does not give one value per variable, so no default is claimed for it)."""

    names: tuple[str, ...]
    defaults: tuple[str | None, ...]
    where: str


def cells(line: str) -> list[str]:
    # an escaped pipe (`promote\|rollback`) is text of a cell, not a border
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def config_rows(path: Path = README) -> list[ConfigRow]:
    """Rows of every `| variable | default | what |` table in `path`."""
    rows: list[ConfigRow] = []
    in_table = False
    for n, line in enumerate(text(path).splitlines(), 1):
        if not line.startswith("|"):
            in_table = False
            continue
        row = cells(line)
        if [c.lower() for c in row[:2]] == ["variable", "default"]:
            in_table = True
            continue
        if not in_table or set(row[0]) <= {"-", ":"}:
            continue
        named = re.sub(r"\(or [^)]*\)", "", row[0])  # `GEMINI_API_KEY` (or `GOOGLE_API_KEY`): one
        names = tuple(re.findall(r"`([A-Z][A-Z0-9_]*[A-Z0-9])`", named))
        parts = re.split(r",\s+", row[1])
        if len(parts) == 1:  # `unset` for every variable of the row
            parts *= len(names)
        defaults = tuple(parts) if len(parts) == len(names) else (None,) * len(names)
        rows.append(ConfigRow(names, defaults, f"{path.relative_to(ROOT)}:{n}"))
    return rows


# "`SWITCHYARD_CALL_TIMEOUT_S` (60 s)", "`SWITCHYARD_FILES_ORG_BYTES` (1 GiB)": a default said in passing
_PROSE_DEFAULT = re.compile(r"`(SWITCHYARD_[A-Z0-9_]+)` \((\d[\d,.]*)(?: ?([A-Za-z]+))?\)")
_UNITS = {
    "ms": 1, "s": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
}  # fmt: skip


def prose_defaults() -> list[tuple[str, float, str]]:
    """(variable, value, where) of each default the prose gives in parentheses, in the variable's unit:
    `(1 hour)` of a `_S` variable is 3600, `(1 GiB)` is 1073741824; `_DAYS` variables count days."""
    found = []
    for path in markdown_files():
        for n, line in enumerate(text(path).splitlines(), 1):
            for name, number, unit in _PROSE_DEFAULT.findall(line):
                if unit and unit not in _UNITS:
                    continue  # `(3 tries)`: not a quantity this reads
                scale = 1 if name.endswith("_DAYS") else _UNITS.get(unit, 1)
                found.append((name, float(number.replace(",", "")) * scale, f"{path.relative_to(ROOT)}:{n}"))
    return found


def configuration_section() -> str:
    """The README's `## Configuration` section with its subsections, up to the next `## ` heading."""
    return section(text(README), "## Configuration")


def section(text: str, heading: str) -> str:
    """From `heading` to the next heading of its level or above."""
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ")[0]
    # from `## `: a `# ` line is a shell comment in a code block (the README's one title is its first line)
    ends = [text.find(f"\n{'#' * n} ", start + 1) for n in range(2, len(level) + 1)]
    end = min((e for e in ends if e != -1), default=-1)
    return text[start : end if end != -1 else len(text)]


def bus_contract() -> str:
    return section(text(README), "## The bus contract (for other systems)")


def layout() -> dict[str, str]:
    """The README's `## Layout` block: each top folder (`libs/cli/`, `tests/`) -> what it says of it."""
    block = section(text(README), "## Layout").split("```")[1]
    entries: dict[str, str] = {}
    folder = ""
    for line in block.splitlines():
        if line[:1].strip():
            folder, _, line = line.partition(" ")
            entries[folder] = ""
        if folder:
            entries[folder] += " " + line.strip()
    return entries
