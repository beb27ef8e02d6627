"""Gateway API keys → tenants. Keys are kept only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets

import msgspec

from gateway.errors import AuthenticationFailed
from gateway.settings import AuthSettings

OPEN_TENANT = "anonymous"
KEY_PREFIX = "hhh-"


class Tenant(msgspec.Struct, frozen=True):
    name: str
    key_sha256: str = ""  # which key it came with (empty on an open gateway): for per-key limits


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its hash, for `hhh keys new`."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key)


class KeyRing:
    """Looks a bearer token up among the configured hashes.

    The lookup is on the token's SHA-256, so timing can at most reveal bits of a hash, never of a key.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self._tenants = {key.sha256: Tenant(key.tenant, key.sha256) for key in settings.keys}

    @property
    def is_open(self) -> bool:
        return not self._tenants

    def authenticate(self, authorization: str | None) -> Tenant:
        if self.is_open:
            return Tenant(OPEN_TENANT)
        if not authorization:
            raise AuthenticationFailed("Missing API key: send 'Authorization: Bearer <gateway key>'.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("Malformed Authorization header: expected 'Bearer <gateway key>'.")
        tenant = self._tenants.get(hash_key(token.strip()))
        if tenant is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return tenant
