"""Who may scrape /metrics (``server.operations.metrics_auth``): anyone, any gateway key, or a scraper
token. The metrics name models, routes and traffic volumes, which some operators keep private."""

from __future__ import annotations

import hmac

from gateway.auth import KeyRing
from gateway.errors import AuthenticationFailed
from gateway.settings import OperationsSettings


class MetricsAccess:
    def __init__(self, settings: OperationsSettings, keyring: KeyRing) -> None:
        self._mode = settings.metrics_auth
        self._token = (settings.metrics_token or "").encode()
        self._keyring = keyring

    def check(self, authorization: str | None) -> None:
        """Raise ``AuthenticationFailed`` (401) unless this ``authorization`` header may read metrics."""
        if self._mode == "open":
            return
        if self._mode == "gateway_key":
            self._keyring.authenticate(authorization)
            return
        scheme, _, token = (authorization or "").partition(" ")
        # Compared in constant time: the token itself is the secret, not a hash of it.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._token):
            raise AuthenticationFailed("/metrics needs 'Authorization: Bearer <metrics token>'.")
