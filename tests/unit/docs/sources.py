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
def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _mentions(pattern: re.Pattern[str], files: list[Path]) -> list[Mention]:
    found = []
    for path in files:
        for n, line in enumerate(_text(path).splitlines(), 1):
            found.extend(Mention(m.group(1), f"{path.relative_to(ROOT)}:{n}") for m in pattern.finditer(line))
    return found


# a JetStream KV bucket or object store as the docs name one: "the KV bucket `switchyard-tenants`"
_STORE = re.compile(r"(?:bucket|store)s?\s+`(switchyard-[a-z0-9-]*[a-z0-9])`")


def store_mentions() -> list[Mention]:
    return _mentions(_STORE, markdown_files())


# a variable's whole name: `SWITCHYARD_SIEM_*` (a family, not a name) ends in `_` and is left out
_ENV = re.compile(r"(?<![\w$])(SWITCHYARD_[A-Z0-9_]*[A-Z0-9])(?![\w*])")


def env_mentions() -> list[Mention]:
    return _mentions(_ENV, [*markdown_files(), *deploy_files()])


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
        for n, line in enumerate(_text(path).splitlines(), 1):
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


def _cells(line: str) -> list[str]:
    # an escaped pipe (`promote\|rollback`) is text of a cell, not a border
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def config_rows(path: Path = README) -> list[ConfigRow]:
    """Rows of every `| variable | default | what |` table in `path`."""
    rows: list[ConfigRow] = []
    in_table = False
    for n, line in enumerate(_text(path).splitlines(), 1):
        if not line.startswith("|"):
            in_table = False
            continue
        cells = _cells(line)
        if [c.lower() for c in cells[:2]] == ["variable", "default"]:
            in_table = True
            continue
        if not in_table or set(cells[0]) <= {"-", ":"}:
            continue
        named = re.sub(r"\(or [^)]*\)", "", cells[0])  # `GEMINI_API_KEY` (or `GOOGLE_API_KEY`): one
        names = tuple(re.findall(r"`([A-Z][A-Z0-9_]*[A-Z0-9])`", named))
        parts = re.split(r",\s+", cells[1])
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
        for n, line in enumerate(_text(path).splitlines(), 1):
            for name, number, unit in _PROSE_DEFAULT.findall(line):
                if unit and unit not in _UNITS:
                    continue  # `(3 tries)`: not a quantity this reads
                scale = 1 if name.endswith("_DAYS") else _UNITS.get(unit, 1)
                found.append((name, float(number.replace(",", "")) * scale, f"{path.relative_to(ROOT)}:{n}"))
    return found


def configuration_section() -> str:
    """The README's `## Configuration` section with its subsections, up to the next `## ` heading."""
    return _section(_text(README), "## Configuration")


def _section(text: str, heading: str) -> str:
    """From `heading` to the next heading of its level or above."""
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ")[0]
    # from `## `: a `# ` line is a shell comment in a code block (the README's one title is its first line)
    ends = [text.find(f"\n{'#' * n} ", start + 1) for n in range(2, len(level) + 1)]
    end = min((e for e in ends if e != -1), default=-1)
    return text[start : end if end != -1 else len(text)]


def bus_contract() -> str:
    return _section(_text(README), "## The bus contract (for other systems)")


# ---------------------------------------------------------------- commands and routes


def code_texts(path: Path) -> list[tuple[str, str]]:
    """Each piece of code `path` shows, with where: a fenced block's logical lines (a line ending in `\\`
    joined to the next) and each inline `code` span (which may run over a line break)."""
    found: list[tuple[str, str]] = []
    rel = path.relative_to(ROOT)
    fenced = False
    pending = ""
    prose: list[tuple[int, str]] = []  # (line number, text) outside fences

    def spans() -> None:
        text = "\n".join(line for _, line in prose)
        for match in re.finditer(r"`([^`]+)`", text):
            n = prose[text.count("\n", 0, match.start())][0]
            found.append((match.group(1).replace("\n", " "), f"{rel}:{n}"))
        prose.clear()

    for n, line in enumerate(_text(path).splitlines(), 1):
        if line.lstrip().startswith("```"):
            if not fenced:
                spans()
            fenced = not fenced
            continue
        if not fenced:
            prose.append((n, line))
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        found.append((pending, f"{rel}:{n}"))
        pending = ""
    spans()
    return found


# `switchyard` as a command (`.venv/bin/switchyard`, `$ switchyard`), never `switchyard-gateway`, a subject or
# kubectl's namespace (`kubectl -n switchyard get pods`); its words up to a shell operator
_COMMAND = re.compile(
    r"(?:^|[\s(\"'/$])(?<!-n )(?<!--namespace )switchyard"
    r"((?:\s+[^\s;&|#`)>]+(?:\\?\|[^\s;&#`)>|]+)*)*)"
)


def cli_invocations() -> list[tuple[list[str], str]]:
    """Every `switchyard ...` command line the docs show, as its words: `promote\\|rollback` (one of
    two) stays one word for the test to split, a `[--flag]`'s brackets dropped."""
    found = []
    for path in markdown_files():
        for code, where in code_texts(path):
            for match in _COMMAND.finditer(code):
                words = [w.strip("[]") for w in match.group(1).split()]
                shell = next((i for i, w in enumerate(words) if "$(" in w), len(words))  # `$(date -u)`
                found.append(([w for w in words[:shell] if w], where))
    return found


_METHODS = "GET|POST|PUT|PATCH|DELETE|HEAD"
_ROUTE = re.compile(
    rf"\b(?P<methods>(?:{_METHODS})(?:`?/`?(?:{_METHODS}))*)`?\s+`?(?P<path>(?:/[a-z]|\.\.\./)[\w/{{}}:.\-<>]*)"
    rf"|`(?P<bare>{_METHODS})`(?!/)"
)


def _continued(base: str, rest: str) -> str:
    """`.../items/{item_id}` after `/v1/conversations/{id}/items`: the whole path it stands for (cut where
    its first segment is in `base`; after a last `{param}` of `base` when it starts with one)."""
    first = rest.split("/")[1]
    if first.startswith("{"):
        return re.sub(r"/\{[^}]*\}$", "", base) + rest
    cut = base.rfind(f"/{first}")
    return (base[:cut] if cut != -1 else base) + rest


def route_mentions() -> list[tuple[str, str, str]]:
    """(method, path, where) of every `METHOD /path` the docs show: `GET`/`DELETE /v1/x` is two, a bare
    `` `PUT` `` right after `` `GET /v1/x`, `` is `PUT /v1/x`, and `.../items` continues the last whole
    path (`_continued`)."""
    found = []
    for path in markdown_files():
        rel = path.relative_to(ROOT)
        base = ""  # the last whole path: what `...` stands for
        for n, line in enumerate(_text(path).splitlines(), 1):
            last, end = "", -1  # the line's last path, and where it ended: what a bare method is of
            for match in _ROUTE.finditer(line):
                if match.group("bare"):
                    if last and re.fullmatch(r"`?,\s*", line[end : match.start()]):
                        found.append((match.group("bare"), last, f"{rel}:{n}"))
                        end = match.end()
                    continue
                url = match.group("path").rstrip(".:,")
                if url.startswith("..."):
                    url = _continued(base, url[3:])
                else:
                    base = url
                last, end = url, match.end()
                for method in re.findall(_METHODS, match.group("methods")):
                    found.append((method, url, f"{rel}:{n}"))
    return found


_PATH = re.compile(r"(?<![\w.:/\-])(/v1(?:beta)?/[\w/{}:.\-<>]*[\w}>])")


def path_mentions() -> list[Mention]:
    """Every `/v1/...` path the docs write, with a method or without (`/v1/usage/statement`)."""
    return _mentions(_PATH, markdown_files())


def layout() -> dict[str, str]:
    """The README's `## Layout` block: each top folder (`libs/cli/`, `tests/`) -> what it says of it."""
    block = _section(_text(README), "## Layout").split("```")[1]
    entries: dict[str, str] = {}
    folder = ""
    for line in block.splitlines():
        if line[:1].strip():
            folder, _, line = line.partition(" ")
            entries[folder] = ""
        if folder:
            entries[folder] += " " + line.strip()
    return entries


_HEADER = re.compile(r"(?i)(?<![\w-])(x-switchyard-[a-z0-9-]*[a-z0-9])")


def header_mentions() -> list[Mention]:
    """Every `x-switchyard-*` header the docs name, lower-cased as HTTP/2 writes it."""
    return [Mention(m.name.lower(), m.where) for m in _mentions(_HEADER, markdown_files())]


def error_codes() -> list[Mention]:
    """The `code`s of the README's error table (`### Errors`: `| status | type | code | when |`)."""
    section = _section(_text(README), "### Errors")
    found = []
    for line in section.splitlines():
        cells = _cells(line) if line.startswith("|") else []
        if len(cells) >= 4 and cells[0].isdigit():
            where = f"README.md, a {cells[0]} row"
            found.extend(Mention(code, where) for code in re.findall(r"`(\w+)`", cells[2]))
    return found
