"""The README's bus contract names the events and subjects of the code's event registry and of
docs/asyncapi.yaml (which test_architecture keeps equal to what the code generates), and only those."""

from __future__ import annotations

import re
from functools import cache

import pytest
import yaml

from tests.unit.docs import code_facts, sources

pytestmark = pytest.mark.unit

# Subjects the contract names that are deliberately no subject of Switchyard:
NOT_SUBJECTS = {
    "switchyard.task.submited",  # the misspelt subject of the dead-letter example (not run, not recorded)
}

# a subject, with `<param>`s in prose and `{PARAM}`s in the example's f-strings
_NAME = re.compile(r"(?<![\w.\-/])(switchyard(?:\.[a-z0-9_]+|\.<[a-z_]+>|\.\{[A-Za-z_]+\})+)")
_TYPE = re.compile(r"\.v\d+$")


def _contract_names() -> set[str]:
    found = _NAME.findall(sources.bus_contract())
    return {re.sub(r"\{(\w+)\}", lambda m: f"<{m.group(1).lower()}>", name) for name in found}


@cache
def _channels() -> set[str]:
    """The channel addresses of docs/asyncapi.yaml, `{task_id}` as the README writes it, `<task_id>`."""
    document = yaml.safe_load((sources.ROOT / "docs" / "asyncapi.yaml").read_text(encoding="utf-8"))
    return {re.sub(r"\{(\w+)\}", r"<\1>", c["address"]) for c in document["channels"].values()}


def _is_subject(name: str) -> bool:
    """A channel of the AsyncAPI document, one subject of a `<param>` channel
    (`switchyard.result.<token>.job42`) or of a prefix of the subject table (`switchyard.dlq.<service>`)."""
    if name in _channels():
        return True
    if any(re.fullmatch(re.sub(r"<\w+>", r"[^.]+", re.escape(c)), name) for c in _channels() if "<" in c):
        return True
    prefixes = {v for k, v in code_facts.subject_table().items() if k.endswith("_PREFIX")}
    return name.rsplit(".", 1)[0] in prefixes and name.rsplit(".", 1)[1].startswith("<")


def test_every_event_type_the_contract_names_is_registered() -> None:
    types = code_facts.event_types()
    unknown = sorted(n for n in _contract_names() if _TYPE.search(n) and n not in types)
    assert not unknown, "event types the bus contract names that the code has not:\n" + "\n".join(unknown)


def test_every_subject_the_contract_names_is_a_channel() -> None:
    subjects = {n for n in _contract_names() if not _TYPE.search(n)} - NOT_SUBJECTS
    unknown = sorted(n for n in subjects if not _is_subject(n))
    assert not unknown, "subjects the bus contract names that asyncapi.yaml has not:\n" + "\n".join(unknown)


def test_every_registered_event_is_in_the_contract_and_the_asyncapi_document() -> None:
    named = _contract_names()
    missing, unlisted = [], []
    for event_type, subject in code_facts.event_types().items():
        channel = subject or "switchyard.result.<tenant_token>.<task_id>"
        if event_type not in named and channel not in named:
            missing.append(f"{event_type} (on {channel})")
        if channel not in _channels():
            unlisted.append(f"{event_type} (on {channel})")
    assert not missing, "events the bus contract does not name:\n" + "\n".join(missing)
    assert not unlisted, "events whose subject is no channel of asyncapi.yaml:\n" + "\n".join(unlisted)


def test_every_bucket_and_object_store_the_docs_name_exists() -> None:
    stores = {v for k, v in code_facts.subject_table().items() if k.startswith(("KV_", "OBJ_"))}
    mentions = sources.store_mentions()
    unknown = [str(m) for m in mentions if m.name not in stores]
    assert len(mentions) > 20, "the docs' buckets were not read"
    assert not unknown, "buckets and object stores the docs name that the code lacks:\n" + "\n".join(unknown)


def test_every_allowed_exception_is_still_in_the_contract() -> None:
    assert _contract_names() >= NOT_SUBJECTS, "a stale entry of NOT_SUBJECTS"


def test_a_subject_of_a_channel_with_a_parameter_is_a_subject() -> None:
    assert _is_subject("switchyard.result.<token>.job42") and _is_subject("switchyard.dlq.<service>")
    assert not _is_subject("switchyard.result") and not _is_subject("switchyard.task.submited")
