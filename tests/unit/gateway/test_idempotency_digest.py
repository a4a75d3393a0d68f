"""An Idempotency-Key's retry is compared by the digest of what its body says (`idempotency.digest`):
the same JSON written with its keys in another order, other whitespace or other escapes is the same
request; any other value is not; what is kept is a SHA-256, never the body."""

from __future__ import annotations

import hashlib

from switchyard.gateway.taskapi.idempotency import KEYED, BodyDigest, BodyKey, digest

BODY = b'{"model":"auto","max_tokens":20,"messages":[{"role":"user","content":"caf\\u00e9"}]}'


def test_the_same_json_written_otherwise_has_one_digest() -> None:
    written_otherwise = (
        '{\n "messages": [{"content": "caf\u00e9", "role": "user"}],\r\n\t"max_tokens": 20, "model": "auto"}'
    ).encode()
    assert digest(written_otherwise) == digest(BODY)
    assert digest(orjson_value()) == digest(BODY)


def test_another_value_order_or_type_is_another_request() -> None:
    others = [
        BODY.replace(b"20", b"21"),
        BODY.replace(b"20", b'"20"'),
        BODY.replace(b'"content":"caf\\u00e9"', b'"content":"cafe"'),
        b'{"model":"auto","max_tokens":20,"messages":[{"role":"user","content":"caf\\u00e9"},'
        b'{"role":"user","content":"x"}]}',
    ]
    assert len({digest(BODY), *(digest(o) for o in others)}) == len(others) + 1
    first, second = b'{"a":[1,2]}', b'{"a":[2,1]}'  # a list's order is its meaning
    assert digest(first) != digest(second)


def test_what_is_kept_is_a_sha256_not_the_body() -> None:
    kept = digest(BODY)
    assert len(kept) == 64 and int(kept, 16) >= 0 and b"caf" not in kept.encode()


def test_a_body_that_is_not_json_is_digested_as_it_came() -> None:
    assert digest(b"{not json") != digest(b"{not json ")
    assert digest(b"{not json") == digest(b"{not json")


def orjson_value() -> dict[str, object]:
    return {"messages": [{"role": "user", "content": "caf\u00e9"}], "model": "auto", "max_tokens": 20}


KEY = BodyKey(b"a deployment's secret, 32 bytes!")


def test_a_key_kept_before_bodies_were_compared_by_their_json_still_matches_its_bytes() -> None:
    """Keys claimed before this kept the SHA-256 of the body's bytes: a retry sending those bytes again
    (after an upgrade, within the key's seven or thirty days) is the same body, not a 409."""
    said = BodyDigest.of(BODY, KEY)
    kept_before = hashlib.sha256(BODY).hexdigest()
    assert said.matches(kept_before) and said.matches(digest(BODY))
    assert said.kept == KEY.seal(digest(BODY))  # what is kept from now on
    assert not said.matches(hashlib.sha256(BODY + b" ").hexdigest())
    assert not BodyDigest.of(BODY.replace(b"20", b"21"), KEY).matches(kept_before)


def test_what_is_kept_now_is_keyed_by_the_deployments_secret() -> None:
    """A reader of the bucket who guesses the body cannot confirm it: the kept digest is neither the plain
    SHA-256 of its JSON nor of its bytes, and another deployment's secret makes another digest."""
    said = BodyDigest.of(BODY, KEY)
    assert said.kept.startswith(KEYED) and digest(BODY) not in said.kept
    assert hashlib.sha256(BODY).hexdigest() not in said.kept
    other = BodyDigest.of(BODY, BodyKey(b"another deployment's secret, 32b"))
    assert other.kept != said.kept and not other.matches(said.kept)
    assert said.matches(said.kept)
    assert "secret" not in repr(KEY)


def test_a_keyed_digest_is_compared_keyed_only() -> None:
    """A kept keyed digest is matched by the keyed digest alone: a plain digest the request also carries
    (for digests kept before) never stands in for it."""
    said = BodyDigest.of(BODY, KEY)
    assert not said.matches(KEYED + digest(BODY))
