"""The identity provider's signing keys (JWKS), fetched with httpx and cached.

Keys are refreshed when the cache is older than `max_age_s`, and when a token names a key id we do not
hold (the provider rotated its keys) — but at most once per `min_refresh_s`, so tokens with made-up key
ids cannot make the gateway hammer the provider. If a refresh fails, the keys already held stay in use.
Without `jwks_url`, the URL comes from the issuer's OpenID discovery document.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt

log = logging.getLogger(__name__)


class JwksUnavailable(Exception):
    """No key could be fetched from the identity provider."""


class Jwks:
    def __init__(
        self,
        *,
        issuer: str,
        url: str | None = None,
        max_age_s: float = 3600.0,
        min_refresh_s: float = 30.0,
        timeout_s: float = 5.0,
    ) -> None:
        self._issuer = issuer
        self._url = url
        self._max_age_s = max_age_s
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = 0.0  # monotonic; 0: never
        self._tried_at = -float("inf")
        self._lock = asyncio.Lock()
        self.fetches = 0  # successful fetches, for tests and metrics

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key a token names (a token without `kid` may use the only key there is); None if unknown."""
        now = time.monotonic()
        found = self._find(kid)
        fresh = bool(self._keys) and now - self._fetched_at <= self._max_age_s
        if found is not None and fresh:
            return found
        if now - self._tried_at >= self._min_refresh_s:
            await self._refresh(asked_at=now)
        if not self._keys:
            raise JwksUnavailable("the identity provider's keys could not be fetched")
        return self._find(kid)

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self, *, asked_at: float) -> None:
        async with self._lock:
            if self._tried_at >= asked_at:  # another request refreshed while we waited
                return
            self._tried_at = time.monotonic()
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                log.warning("could not fetch the identity provider's keys: %s", exc)
                if not self._keys:
                    raise JwksUnavailable("the identity provider's keys could not be fetched") from exc
                return
            self._keys = keys
            self._fetched_at = time.monotonic()
            self.fetches += 1

    async def _fetch(self) -> dict[str | None, jwt.PyJWK]:
        async with httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False) as client:
            url = self._url or await self._discover(client)
            response = await client.get(url, headers={"accept": "application/json"})
            response.raise_for_status()
            document: Any = response.json()
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("the JWKS document has no `keys` list")
        keys: dict[str | None, jwt.PyJWK] = {}
        for data in document["keys"]:
            if not isinstance(data, dict) or data.get("use", "sig") != "sig":
                continue
            try:
                keys[data.get("kid")] = jwt.PyJWK(data)
            except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:  # an algorithm we do not take: skipped
                log.info("skipping JWKS key %r: %s", data.get("kid"), exc)
        if not keys:
            raise ValueError("the JWKS document has no usable signing key")
        return keys

    async def _discover(self, client: httpx.AsyncClient) -> str:
        response = await client.get(f"{self._issuer.rstrip('/')}/.well-known/openid-configuration")
        response.raise_for_status()
        url = response.json().get("jwks_uri")
        if not isinstance(url, str):
            raise ValueError("the discovery document has no jwks_uri")
        self._url = url
        return url
