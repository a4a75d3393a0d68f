"""What the code has: its settings (with their variables and defaults), CLI commands, HTTP routes, metrics
and events, read by introspection (importing the modules that define them, never starting anything)."""

from __future__ import annotations

import argparse
import ast
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from tests.unit.docs.sources import ROOT


def source_files() -> list[Path]:
    """Every Python module of the packages (libs/*, services/*), migrations included."""
    return sorted([*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")])


def _module(path: Path) -> str:
    src = next(p for p in path.parents if p.name == "src")
    return ".".join(path.relative_to(src).with_suffix("").parts)


def _import_defining(pattern: str) -> None:
    needle = re.compile(pattern, re.MULTILINE)
    for path in source_files():
        if needle.search(path.read_text(encoding="utf-8")):
            importlib.import_module(_module(path))


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    env: str  # the variable that sets it
    owner: str  # its settings class
    default: Any  # PydanticUndefined where it has none (a required setting)
    required: bool


@cache
def settings() -> tuple[Setting, ...]:
    """Every field of every pydantic-settings class of the packages, under each variable that sets it."""
    _import_defining(r"^class \w+\((?:BaseSettings|\w+Settings)\):")
    found = []
    for cls in _subclasses(BaseSettings):
        if not cls.__module__.startswith("switchyard."):
            continue
        prefix = str(cls.model_config.get("env_prefix") or "")
        for field, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, str):
                names = [alias]
            elif isinstance(alias, AliasChoices):
                names = [c for c in alias.choices if isinstance(c, str)]
            else:
                names = [f"{prefix}{field}".upper()]
            found.extend(
                Setting(name, cls.__name__, info.get_default(call_default_factory=True), info.is_required())
                for name in names
            )
    return tuple(found)


def _subclasses(cls: type[Any]) -> Iterator[type[Any]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


_ENV_NAME = re.compile(r"SWITCHYARD_[A-Z0-9_]*[A-Z0-9]")


@cache
def environment_reads() -> frozenset[str]:
    """`SWITCHYARD_*` names the code uses whole as a string (`os.environ.get("SWITCHYARD_X")`, an
    environment handed to a child), outside settings classes, and those the shell scripts read; a message
    that names one is not a read."""
    found = set()
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and _ENV_NAME.fullmatch(value):
                found.add(value)
    for script in ROOT.glob("scripts/*.sh"):  # install and build: `${SWITCHYARD_WHEEL_CACHE:-...}`
        found.update(re.findall(r"\$\{?(SWITCHYARD_[A-Z0-9_]*[A-Z0-9])", script.read_text(encoding="utf-8")))
    return frozenset(found)


# ---------------------------------------------------------------- the CLI


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]  # () for `switchyard` itself
    options: frozenset[str]  # its own and its parents' (`switchyard dlq --nats-url URL list`)
    subcommands: frozenset[str]


@cache
def cli_commands() -> dict[tuple[str, ...], Command]:
    from switchyard.cli.main import build_parser

    found: dict[tuple[str, ...], Command] = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...], inherited: frozenset[str]) -> None:
        options = inherited | {o for a in parser._actions for o in a.option_strings}
        children: dict[str, argparse.ArgumentParser] = {}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                children.update(action.choices)
        found[path] = Command(path, frozenset(options), frozenset(children))
        for name, child in children.items():
            walk(child, (*path, name), frozenset(options))

    walk(build_parser(), (), frozenset())
    return found


# ---------------------------------------------------------------- the gateway's routes


@dataclass(frozen=True)
class Route:
    method: str  # GET ... or WEBSOCKET
    path: str  # as declared: /v1/files/{file_id}, /v1/models/{model:path}
    public: bool  # in the OpenAPI document (FastAPI's own /docs, /openapi.json are not)

    def matches(self, path: str) -> bool:
        """Whether a documented path is this route: `{id}`, `<id>` or a literal id stand for a parameter."""
        pattern = re.sub(r"\\\{[^}]*:path\\\}", ".+", re.escape(self.path))
        pattern = re.sub(r"\\\{[^}]*\\\}", r"[^/]+", pattern)
        return re.fullmatch(pattern, path.split("?")[0]) is not None


@cache
def gateway_routes() -> tuple[Route, ...]:
    from switchyard.gateway.app import create_app
    from switchyard.gateway.config import GatewaySettings

    app = create_app(GatewaySettings())  # builds the routes; nothing connects before the app starts
    return tuple(_routes(app.routes, ""))


def _routes(routes: list[Any], prefix: str) -> Iterator[Route]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's included router, walked into
        if included is not None:
            yield from _routes(included.routes, prefix + route.include_context.prefix)
            continue
        public = bool(getattr(route, "include_in_schema", True))
        for method in sorted(getattr(route, "methods", None) or {"WEBSOCKET"}):
            if method != "HEAD":
                yield Route(method, prefix + route.path, public)


@cache
def string_constants() -> frozenset[str]:
    """Every string literal of the packages: where an error code, when it is one, is written."""
    return frozenset(
        node.value
        for path in source_files()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


@cache
def switchyard_headers() -> frozenset[str]:
    """Every `x-switchyard-*` header name the packages write (sent or read), lower-cased."""
    pattern = re.compile(r"(?i)(?<![\w-])x-switchyard-[a-z0-9-]*[a-z0-9]")
    return frozenset(
        m.lower() for path in source_files() for m in pattern.findall(path.read_text(encoding="utf-8"))
    )


# ---------------------------------------------------------------- metrics and events


@cache
def metrics() -> dict[str, str]:
    """Every `switchyard_*` metric family the packages register, by its name as Prometheus exposes it
    without suffixes (a counter `x_total` is `x`), with its type."""
    from prometheus_client import REGISTRY

    _import_defining(r"^from prometheus_client import")
    return {f.name: f.type for f in REGISTRY.collect() if f.name.startswith("switchyard_")}


def exposed_series(name: str, kind: str) -> set[str]:
    """The series names a family of `kind` is scraped as."""
    if kind == "counter":
        return {f"{name}_total", f"{name}_created"}
    if kind in {"histogram", "summary"}:
        return {name, f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    return {name}


def event_types() -> dict[str, str | None]:
    """CloudEvents type -> the subject it is published on (None: its task's result subject)."""
    from switchyard.common.events.registry import EVENT_TYPES

    return {t: getattr(m, "SUBJECT", None) for t, m in EVENT_TYPES.items()}


def subject_table() -> dict[str, str]:
    """Every name of the one subject table (subjects.py): subjects, prefixes, streams, buckets."""
    from switchyard.common import subjects

    return {k: v for k, v in vars(subjects).items() if k.isupper() and isinstance(v, str)}
