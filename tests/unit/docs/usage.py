"""What the docs show a user doing: the `switchyard` commands they type, the requests they send, the headers
and error codes they get back."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.docs.sources import README, ROOT, Mention, cells, markdown_files, mentions, section, text


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

    for n, line in enumerate(text(path).splitlines(), 1):
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


# a fenced line that runs the command: `$ switchyard ...`, `.venv/bin/switchyard ...`, `switchyard ...`
_COMMAND_LINE = re.compile(r"^\s*(?:\$\s+)?(?:[\w.\-]*/)*switchyard\s+(?P<rest>.*)$")
# where the command's own words end: a shell operator, a redirection, a comment, a command substitution
_SHELL_END = re.compile(r"\s(?:#|;|&&|\|\||\|\s|[12]?>)|;|\$\(")


def cli_command_lines() -> list[tuple[list[str], str]]:
    """Every whole `switchyard ...` command line of a fenced block (what a reader copies and runs, not the
    fragments prose quotes), as its words up to a shell operator; `[--flag N]`'s brackets dropped. A word
    `a|b` is left for the test to split."""
    found = []
    for path in markdown_files():
        rel = path.relative_to(ROOT)
        fenced, pending = False, ""
        for n, line in enumerate(text(path).splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced, pending = not fenced, ""
                continue
            if not fenced:
                continue
            pending += line
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            match = _COMMAND_LINE.match(pending)
            pending = ""
            if match:
                rest = _SHELL_END.split(" " + match.group("rest"), maxsplit=1)[0]
                words = [w.strip("[]") for w in rest.split()]
                found.append(([w for w in words if w], f"{rel}:{n}"))
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
        for n, line in enumerate(text(path).splitlines(), 1):
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
    return mentions(_PATH, markdown_files())


_HEADER = re.compile(r"(?i)(?<![\w-])(x-switchyard-[a-z0-9-]*[a-z0-9])")


def header_mentions() -> list[Mention]:
    """Every `x-switchyard-*` header the docs name, lower-cased as HTTP/2 writes it."""
    return [Mention(m.name.lower(), m.where) for m in mentions(_HEADER, markdown_files())]


def error_codes() -> list[Mention]:
    """The `code`s of the README's error table (`### Errors`: `| status | type | code | when |`)."""
    found = []
    for line in section(text(README), "### Errors").splitlines():
        row = cells(line) if line.startswith("|") else []
        if len(row) >= 4 and row[0].isdigit():
            where = f"README.md, a {row[0]} row"
            found.extend(Mention(code, where) for code in re.findall(r"`(\w+)`", row[2]))
    return found
