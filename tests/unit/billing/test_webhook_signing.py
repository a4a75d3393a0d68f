"""Webhook signatures and secrets at rest: what a receiver verifies, and what the database holds."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from switchyard.billing.webhooks import RefusedUrl, SecretBox, check_url, secret_box, sign, verify_signature
from switchyard.common.errors import ConfigurationError

pytestmark = pytest.mark.unit

SECRET = "whsec_test"
BODY = b'{"id":"e1","data":{"threshold_pct":80}}'


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, timestamp=1795320305)
    expected = hmac.new(SECRET.encode(), b"1795320305." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1795320305,v1={expected}"


def test_a_receiver_accepts_a_fresh_signature_and_rejects_any_change() -> None:
    header = sign(SECRET, BODY, timestamp=1_000_000)
    assert verify_signature(SECRET, BODY, header, now=1_000_010)
    assert not verify_signature("whsec_other", BODY, header, now=1_000_010)
    assert not verify_signature(SECRET, BODY.replace(b"80", b"50"), header, now=1_000_010)
    assert not verify_signature(SECRET, BODY, header.replace("t=1000000", "t=1000001"), now=1_000_010)
    assert not verify_signature(SECRET, BODY, header, now=1_000_000 + 301)  # replayed too late
    assert not verify_signature(SECRET, BODY, "v1=abc", now=1_000_000)


def test_secrets_are_encrypted_at_rest_and_never_in_repr(tmp_path: Path) -> None:
    box = secret_box(None, var_dir=tmp_path)
    sealed = box.seal(SECRET)
    assert SECRET not in sealed and box.open(sealed) == SECRET
    assert (tmp_path / "billing-webhook.key").stat().st_mode & 0o077 == 0  # readable by us only
    assert secret_box(None, var_dir=tmp_path).open(sealed) == SECRET  # the same key next start
    assert "redacted" in repr(box)
    with pytest.raises(ConfigurationError):
        SecretBox(Fernet.generate_key()).open(sealed)  # another key cannot read it
    with pytest.raises(ConfigurationError):
        SecretBox(b"not-a-key")


def test_without_a_key_outside_the_embedded_run_webhooks_refuse_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SWITCHYARD_BILLING_WEBHOOK_KEY"):
        secret_box(None, var_dir=tmp_path, create=False)
    key = Fernet.generate_key().decode()
    assert secret_box(key, var_dir=tmp_path, create=False).open(SecretBox(key.encode()).seal("s")) == "s"
    assert not (tmp_path / "billing-webhook.key").exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8222/jsz",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "https://192.168.0.10/hook",
    ],
)
async def test_endpoints_on_the_platforms_own_network_are_refused(url: str) -> None:
    with pytest.raises(RefusedUrl, match="not a public address"):
        await check_url(url, allow_private=False)
    await check_url(url, allow_private=True)  # the embedded run's receivers live on loopback


async def test_only_http_urls_with_a_host_are_accepted() -> None:
    await check_url("https://93.184.216.34/hook", allow_private=False)
    for bad in ("ftp://93.184.216.34/x", "file:///etc/passwd", "http:///nohost"):
        with pytest.raises(RefusedUrl):
            await check_url(bad, allow_private=True)
