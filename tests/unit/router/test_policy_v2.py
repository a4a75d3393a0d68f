"""Policy v2: validation with clear errors, and reloading without a restart."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from switchyard.common.errors import ConfigurationError
from switchyard.common.policy import DEFAULT_POLICY, Policy, load_policy
from switchyard.common.policy_source import PolicySource

pytestmark = pytest.mark.unit


def write(path: Path, **changes: object) -> Path:
    raw = yaml.safe_load(DEFAULT_POLICY.read_text())
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_bundled_policy_has_every_section() -> None:
    p = load_policy()
    assert {m.tier for m in p.models} == {"local", "fast", "coordination", "standard", "premium"}
    assert p.chains["coding"].cost_sensitive == "openai/gpt-6-luna"
    assert "json_mode" in p.model("openai/gpt-6-sol").capabilities  # type: ignore[union-attr]
    assert p.model("openai/gpt-6.1-sol").rpm == 500  # type: ignore[union-attr]
    assert p.output_tokens("coding") == 600 and p.output_tokens("unknown") == p.expected_output_tokens


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"chains": {"coding": {"primary": "openai/nope"}}}, "chains.coding: unknown model 'openai/nope'"),
        ({"chains": {"poetry": {"primary": "openai/gpt-6-sol"}}}, "unknown task type 'poetry'"),
        ({"budget": {"downgrade_max_tier": "gold"}}, "budget.downgrade_max_tier: unknown tier 'gold'"),
        ({"tenants": {"acme": {"max_tier": "gold"}}}, "tenants.acme.max_tier"),
        ({"tenants": {"acme": {"denied_models": ["x/y"]}}}, "tenants.acme.denied_models: unknown model"),
        ({"strategies": {"parallel": {"fan_out": 9}}}, "strategies.parallel.fan_out"),
        ({"strategies": {"cascade": {"checks": ["vibes"]}}}, "strategies.cascade.checks"),
        ({"health": {"ema_alpha": 0}}, "health.ema_alpha"),
        # a tenant's own chain naming a model the tenant may not use would be dropped without a word
        (
            {
                "tenants": {
                    "acme": {"max_tier": "fast", "chains": {"coding": {"primary": "openai/gpt-6-sol"}}}
                }
            },
            "tenants.acme.chains.coding: 'openai/gpt-6-sol' is above the tenant's max_tier (fast)",
        ),
        (
            {
                "tenants": {
                    "acme": {
                        "denied_models": ["openai/gpt-6-luna"],
                        "chains": {
                            "qa": {"primary": "openai/gpt-6-sol", "cost_sensitive": "openai/gpt-6-luna"}
                        },
                    }
                }
            },
            "tenants.acme.chains.qa: 'openai/gpt-6-luna' is denied to the tenant",
        ),
    ],
)
def test_invalid_policies_name_the_field(tmp_path: Path, changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        load_policy(write(tmp_path / "p.yaml", **changes))
    assert fragment in err.value.message


def test_a_version_1_policy_still_loads() -> None:
    text = (
        "version: v1\nmodels:\n - {id: a/b, provider: a, upstream: b, tier: fast, input_per_1k: 0.001, "
        "output_per_1k: 0.002, context_window: 1000}\n"
    )
    from switchyard.common.policy import Policy

    p = Policy.model_validate(yaml.safe_load(text))
    assert p.chains == {} and p.strategies.cascade.enabled and p.model("a/b").cost(1000, 0) == 0.001  # type: ignore[union-attr]


def test_the_policy_reloads_when_the_file_changes_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", version="one")
    now = [0.0]
    seen: list[tuple[str | None, str | None]] = []
    source = PolicySource(
        path, check_s=1.0, clock=lambda: now[0], on_reload=lambda p, e: seen.append((p and p.version, e))
    )
    assert source.current().version == "one"
    write(path, version="two")
    os.utime(path, ns=(1, 10**18))
    assert source.current().version == "one"  # not checked again yet
    now[0] = 2.0
    assert source.current().version == "two"
    path.write_text("version: [broken\n")
    now[0] = 4.0
    assert source.current().version == "two" and "not valid YAML" in (source.last_error or "")
    assert seen[0] == ("two", None) and seen[1][0] is None


def test_a_file_still_being_written_is_not_loaded_until_it_settles(tmp_path: Path) -> None:
    """A policy file written in place, in pieces (an editor, `cp`, a slow copy), can be read half-written;
    cut after `models:` it is still a valid policy, without the tenants' limits. A file changed less than
    `settle_s` ago waits for a later check; written whole, its tenants are in force."""
    full = yaml.safe_load(DEFAULT_POLICY.read_text())
    full["version"] = "whole"
    full["tenants"] = {"capped": {"max_tier": "fast"}}
    path = write(tmp_path / "p.yaml", version="old")
    source = PolicySource(path, check_s=1.0, settle_s=0.25)
    text = yaml.safe_dump(full, sort_keys=False)
    path.write_text(text[: text.index("\ntenants:")] + "\n")  # the first part of the write
    assert not source.reload_if_changed() and source.current().version == "old"
    path.write_text(text)
    assert not source.reload_if_changed()  # just written: not yet
    settled = time.time_ns() - 10**9
    os.utime(path, ns=(settled, settled))
    assert source.reload_if_changed()
    assert source.current().version == "whole" and source.current().tenants["capped"].max_tier == "fast"


def test_a_tenants_override_changes_only_the_fields_it_names() -> None:
    """`tenants.acme.thresholds: {fast_below: 0.2}` moves the fast threshold for acme; the policy's
    premium threshold and adaptive share stay (they were the class defaults, 0.8 and none: a tenant
    changing one number silently lost adaptive routing), and so for strategies and the budget."""
    raw = yaml.safe_load(DEFAULT_POLICY.read_text())
    raw["tenants"] = {
        "acme": {
            "thresholds": {"fast_below": 0.2},
            "strategies": {"parallel": {"enabled": False}},
            "budget": {"downgrade_below_usd": 5},
        }
    }
    base = Policy.model_validate(raw)
    acme = base.for_tenant("acme")
    assert acme.thresholds == base.thresholds.model_copy(update={"fast_below": 0.2})
    assert acme.thresholds.premium_share == 0.3 and acme.thresholds.premium_above == 0.5
    assert not acme.strategies.parallel.enabled and acme.strategies.parallel.fan_out == 2
    assert acme.strategies.cascade == base.strategies.cascade  # its task types, not every type
    assert acme.budget.downgrade_below_usd == 5 and acme.budget.downgrade_max_tier == "fast"
    raw["tenants"] = {"acme": {"thresholds": {"fast_below": 0.7}}}  # above the policy's premium_above
    with pytest.raises(ValidationError, match=r"tenants\.acme\.thresholds"):
        Policy.model_validate(raw)
