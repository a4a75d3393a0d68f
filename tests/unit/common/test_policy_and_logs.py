from __future__ import annotations

import logging
import threading
from pathlib import Path

import orjson
import pytest

from switchyard.common.errors import ConfigurationError
from switchyard.common.logs import configure_logging, redact
from switchyard.common.policy import Policy, load_policy
from switchyard.common.streaming import Chunk, ChunkError, decode_chunk, encode_chunk

pytestmark = pytest.mark.unit


def test_bundled_policy_loads_and_prices() -> None:
    policy = load_policy()
    luna = policy.model("openai/gpt-6-luna")
    assert luna is not None and luna.tier == "fast"
    assert luna.cost(1000, 1000) == pytest.approx(0.0001 + 0.0005)
    assert policy.model("local/smollm2-135m-instruct") is not None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: 1\nmodels: []\n", "models"),
        (
            "version: x\nmodels:\n - {id: a/b, provider: a, upstream: b, tier: gold, input_per_1k: 0, "
            "output_per_1k: 0, context_window: 1}\n",
            "unknown tier",
        ),
        (
            "version: x\nmodels:\n - {id: a/b, provider: c, upstream: b, tier: fast, input_per_1k: 0, "
            "output_per_1k: 0, context_window: 1}\n",
            "must start with its provider",
        ),
        (
            "version: x\nthresholds: {fast_below: 0.9, premium_above: 0.1}\nmodels:\n"
            " - {id: a/b, provider: a, upstream: b, tier: fast, input_per_1k: 0, output_per_1k: 0, "
            "context_window: 1}\n",
            "fast_below",
        ),
        ("version: [unclosed\n", "not valid YAML"),
        (
            "version: x\nmodels:\n - {id: a/b, provider: a, upstream: b, tier: fast, input_per_1k: 0, "
            "output_per_1k: 0, context_window: 1000, long_context: {above: 1000, input_multiplier: 2, "
            "output_multiplier: 1.5}}\n",
            "long_context.above",
        ),
        (
            "version: x\nmodels:\n - {id: a/b, provider: a, upstream: b, tier: fast, input_per_1k: 0, "
            "output_per_1k: 0, context_window: 1}\naliases: {mini: a/c}\n",
            "neither a listed model",
        ),
        (
            "version: x\nmodels:\n - {id: a/b, provider: a, upstream: b, tier: fast, input_per_1k: 0, "
            "output_per_1k: 0, context_window: 1}\naliases: {a/b: auto}\n",
            "a model's own name",
        ),
        (
            "version: x\nmodels:\n - {id: a/b, provider: a, upstream: b, tier: fast, input_per_1k: 0, "
            "output_per_1k: 0, context_window: 1}\naliases: {auto: a/b}\n",
            "a model's own name",
        ),
        (
            "version: x\nmodels:\n - {id: a/b, provider: a, upstream: b, tier: fast, input_per_1k: 0, "
            "output_per_1k: 0, context_window: 1}\naliases: {mini: big, big: a/b}\n",
            "neither a listed model",
        ),
        (
            "version: x\nmodels:\n - {id: a/b, provider: a, upstream: b, tier: fast, input_per_1k: 0, "
            'output_per_1k: 0, context_window: 1}\naliases: {" mini": a/b}\n',
            "is not a model name",
        ),
    ],
)
def test_invalid_policies_name_the_problem(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as err:
        load_policy(path)
    assert fragment in err.value.message
    assert str(path) in err.value.message


def test_missing_policy_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        load_policy(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-abcdefghijklmnop1234",
        "sy_AbCdEfGh_0123456789abcdefghijABCDEFGHIJ",
        "Bearer eyJhbGciOiJIUzI1NiJ9.x.y",
    ],
)
def test_secrets_are_redacted_from_log_text(secret: str) -> None:
    out = redact(f"calling upstream with {secret} now")
    assert "[REDACTED]" in out
    assert secret.split()[-1] not in out


def test_a_urls_password_is_redacted_and_the_rest_kept() -> None:
    # The services log their NATS URL at start, which carries the bus user's password when NATS has users
    # (`switchyard bus credentials`).
    out = redact("switchyard-gateway ready (nats nats://switchyard:s3cr3t-Pa55@nats:4222)")
    assert out == "switchyard-gateway ready (nats nats://switchyard:[REDACTED]@nats:4222)"
    assert redact("nats://nats:4222 and tls://user@host:4222") == "nats://nats:4222 and tls://user@host:4222"


def test_chunk_wire_format_round_trips_compactly() -> None:
    raw = encode_chunk(Chunk(seq=0, delta="Hi"))
    assert raw == b'{"seq":0,"delta":"Hi"}'
    err = decode_chunk(encode_chunk(Chunk(seq=3, error=ChunkError(code="provider_network", message="reset"))))
    assert err.seq == 3 and err.error is not None and err.error.code == "provider_network"


def test_a_logged_exception_shows_no_local_variables_and_is_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A traceback never prints frames' locals (a header dict with a key, a prompt), and a secret in the
    exception's own message is redacted like any log text."""
    for json in (False, True):
        configure_logging(service="test", json=json)
        try:
            headers = {"Authorization": "Bearer sk-local-variable-secret-0123456789abcdef"}
            raise RuntimeError(f"upstream refused sk-proj-{'a' * 40} ({len(headers)} headers)")
        except RuntimeError:
            logging.getLogger("switchyard.test").exception("call failed")
        err = capsys.readouterr().err
        assert "call failed" in err and "RuntimeError" in err and "Traceback" in err
        assert "sk-local-variable-secret" not in err, "locals are never printed"
        assert "sk-proj-" + "a" * 40 not in err, "the exception text is redacted"
        assert len(err.splitlines()) < 40, "a plain traceback, not a rich one with every frame's locals"


def test_an_alias_stands_for_a_model_or_auto() -> None:
    policy = Policy.model_validate(
        {
            "version": "x",
            "models": [
                {
                    "id": "a/b",
                    "provider": "a",
                    "upstream": "b",
                    "tier": "fast",
                    "input_per_1k": 0,
                    "output_per_1k": 0,
                    "context_window": 1,
                },
            ],
            "aliases": {"gpt-4o-mini": "a/b", "fast": "auto"},
        }
    )
    assert policy.resolve("gpt-4o-mini") == "a/b" and policy.resolve("fast") == "auto"
    assert policy.resolve("a/b") == "a/b" and policy.resolve("other") == "other"
    assert policy.for_tenant("t").aliases == policy.aliases
    assert load_policy().aliases == {}  # the bundled policy names none


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        # a masked key whose visible head is long enough for the `sk-` rule: its tail stayed (`wXyZ`)
        ("Incorrect API key provided: sk-proj-AbCdEfGh" + "*" * 40 + "wXyZ.", ["AbCdEfGh", "wXyZ"]),
        ("API key not valid: AIzaSy" + "A1b2" * 8 + "x", ["A1b2A1b2"]),  # a Google API key, 39 characters
        ("GET https://gw.example/v1beta/models/m:streamGenerateContent?alt=sse&key=k3yVal.ue-1", ["k3yVal"]),
    ],
)
def test_no_fragment_of_a_key_survives(text: str, fragments: list[str]) -> None:
    """Provider error messages go into events and the ledger (redacted): not even a key's last characters."""
    out = redact(text)
    assert "[REDACTED]" in out and not any(f in out for f in fragments), out


def test_every_line_names_its_service_whatever_thread_logs_it(capsys: pytest.CaptureFixture[str]) -> None:
    """A library's own worker thread (aiosqlite's, a driver's) does not see the main thread's context
    variables: its lines are named by the service all the same."""
    configure_logging(service="billing", json=True)
    worker = threading.Thread(target=lambda: logging.getLogger("aiosqlite").warning("from a thread"))
    worker.start()
    worker.join()
    (line,) = [orjson.loads(text) for text in capsys.readouterr().err.splitlines()]
    assert line["event"] == "from a thread" and line["service"] == "billing"
