"""The configuration the docs describe is the code's: every variable they name is read, every setting is
described, and every default they state is the one in force."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import PydanticUndefined

from tests.unit.docs import code_facts, sources

pytestmark = pytest.mark.unit

# Named in the docs or deploy/ but deliberately no setting of the code:
NOT_SETTINGS = {
    # docker-compose.yml's own interpolation variables: the image tag, the published address, the folder
    # of NATS passwords (`switchyard bus credentials DIR`) it mounts; compose reads them, no service does
    "SWITCHYARD_VERSION",
    "SWITCHYARD_HTTP_PUBLISH",
    "SWITCHYARD_NATS_CREDENTIALS",
}

# Settings of the code the README leaves undocumented on purpose:
UNDOCUMENTED_SETTINGS: set[str] = set()


def _stream_names() -> set[str]:
    return {v for k, v in code_facts.subject_table().items() if k.startswith("STREAM_")}


def _code_names() -> set[str]:
    return {s.env for s in code_facts.settings()} | code_facts.environment_reads()


def test_every_variable_the_docs_name_is_read_by_the_code() -> None:
    known = _code_names() | NOT_SETTINGS | _stream_names()  # `SWITCHYARD_DLQ` is a stream's name
    unknown = [str(m) for m in sources.env_mentions() if m.name not in known]
    assert not unknown, "variables the docs name but no code reads:\n" + "\n".join(unknown)


def _pointed_readmes() -> list[Path]:
    """The service READMEs the README's configuration section sends its reader to."""
    section = sources.configuration_section()
    return [
        p
        for p in sorted(sources.ROOT.glob("services/*/README.md"))
        if str(p.relative_to(sources.ROOT)) in section or f"the {p.parent.name} README" in section
    ]


def _described_in() -> str:
    section = sources.configuration_section()
    return section + "".join(p.read_text(encoding="utf-8") for p in _pointed_readmes())


def test_every_allowed_exception_is_still_in_the_docs() -> None:
    named = {m.name for m in sources.env_mentions()}
    assert named >= NOT_SETTINGS, "a stale entry of NOT_SETTINGS"


def test_every_setting_is_described_in_the_configuration_section() -> None:
    described = set(re.findall(r"[A-Z][A-Z0-9_]*[A-Z0-9]", _described_in()))
    missing = sorted(
        {s.env for s in code_facts.settings()} - described - UNDOCUMENTED_SETTINGS,
    )
    assert not missing, "settings the configuration section does not describe:\n" + "\n".join(missing)


def _stated(cell: str) -> Any:
    """A default cell as a value (`NOT_STATED` when it says something a value cannot: `the bundled
    policy`, `random`, `a quarter of ...`): `` `8` ``, `1,000`, `262144 (256 KiB)`, `unset`, `{}`."""
    text = re.sub(r"\s*\(.*\)$", "", cell).strip()  # `4294967296 (4 GiB; ...)`: the number
    text = re.sub(r";.*$", "", text).strip()  # `false`; `true` for ...: the first
    quoted = re.fullmatch(r"`([^`]*)`", text)
    text = quoted.group(1) if quoted else text
    if text == "unset":
        return None
    if text in {"true", "false"}:
        return text == "true"
    if re.fullmatch(r"-?[\d,]+(\.\d+)?", text):
        return float(text.replace(",", ""))
    if quoted or re.fullmatch(r"[\w.\-:/]+", text):
        return text
    return NOT_STATED


NOT_STATED = object()


def _same(stated: Any, default: Any) -> bool:
    if stated is None:
        return default in (None, "", {}, [])
    if isinstance(default, bool) or isinstance(stated, bool):
        return stated is default
    if isinstance(stated, float):
        return isinstance(default, int | float) and float(default) == stated
    if stated in ("{}", "[]"):
        return default in ({}, [])
    if isinstance(default, Path):
        return Path(stated) == default
    if isinstance(default, list | tuple):
        return stated == " ".join(str(d) for d in default)
    return stated == str(getattr(default, "value", default))


def test_every_stated_default_is_the_code_default() -> None:
    by_name: dict[str, list[code_facts.Setting]] = {}
    for setting in code_facts.settings():
        by_name.setdefault(setting.env, []).append(setting)
    wrong, compared = [], 0
    rows = [row for path in (sources.README, *_pointed_readmes()) for row in sources.config_rows(path)]
    for row in rows:
        for name, cell in zip(row.names, row.defaults, strict=True):
            stated = NOT_STATED if cell is None else _stated(cell)
            if stated is NOT_STATED:
                continue
            for setting in by_name.get(name, []):
                if setting.default in (None, "") or setting.default is PydanticUndefined:
                    continue  # computed when unset: the docs say what it comes to (`SWITCHYARD_INSTANCE`)
                compared += 1
                if not _same(stated, setting.default):
                    wrong.append(f"{name}: docs {cell}, {setting.owner} {setting.default!r} ({row.where})")
    assert compared > 150, "the tables' defaults were not read"
    assert not wrong, "defaults the README states otherwise than the code:\n" + "\n".join(wrong)


def test_every_default_said_in_passing_is_the_code_default() -> None:
    wrong = []
    mentions = sources.prose_defaults()
    for name, value, where in mentions:
        for setting in code_facts.settings():
            default = setting.default
            numeric = isinstance(default, int | float) and not isinstance(default, bool)
            if setting.env == name and numeric and float(default) != value:
                wrong.append(f"{name}: docs {value:g}, {setting.owner} {default!r} ({where})")
    assert len(mentions) > 30, "the prose's defaults were not read"
    assert not wrong, "defaults the prose states otherwise than the code:\n" + "\n".join(wrong)


def test_the_default_parser_reads_what_the_tables_write() -> None:
    assert _stated("`8`") == 8.0 and _stated("1,000,000") == 1_000_000.0
    assert _stated("262144 (256 KiB)") == 262144.0 and _stated("unset") is None
    assert _stated("`false`; `true` for `switchyard up`'s services") is False
    assert _stated("the bundled policy") is NOT_STATED
    assert not _same(_stated("`120`"), 110.0) and not _same(_stated("`true`"), False)
