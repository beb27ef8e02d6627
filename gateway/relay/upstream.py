"""Upstream LLM servers: routing by model name, and the calls to them through one pooled client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import httpx
import msgspec

from gateway.credentials import mask_credentials, split_credentials
from gateway.errors import ModelNotFound, UpstreamStatus, UpstreamTimeout, UpstreamUnreachable
from gateway.metrics import GatewayMetrics
from gateway.relay.scrub import Scrubber
from gateway.relay.transport import AiohttpTransport
from gateway.settings import UpstreamSettings

log = logging.getLogger("hhh.upstream")

# A miss on an unknown model re-asks discovering upstreams at most this often.
_REDISCOVER_AFTER_S = 10.0


class Upstream:
    def __init__(self, settings: UpstreamSettings) -> None:
        self.settings = settings
        self.name = settings.name
        # Credentials in the URL (user:pass@) become a Basic header: httpx would add one and still pass
        # the URL on, which aiohttp refuses (a ValueError, so a 500), and logs would show them.
        self.base_url, basic_auth = split_credentials(settings.url.rstrip("/"))
        self.models: set[str] = set(settings.models)
        self.discovers_models = not settings.models
        # Learned too: an upstream seen answering fewer choices than `n` asked is treated as not
        # supporting it from then on.
        self.supports_n = settings.supports_n
        # Learned likewise: one that answers 404 to /responses is served through translation from then on.
        self.supports_responses = settings.supports_responses
        timeouts = settings.timeouts
        self.timeout = httpx.Timeout(
            connect=timeouts.connect, read=timeouts.read, write=timeouts.write, pool=timeouts.pool
        )
        authorization = f"Bearer {settings.api_key}" if settings.api_key else basic_auth
        self._auth = {"authorization": authorization} if authorization else {}
        # Everything relayed from this upstream passes it: its key (or Basic credential) never shows.
        self.scrub = Scrubber(authorization.partition(" ")[2] if authorization else None)

    def headers(self, request_id: str | None = None) -> dict[str, str]:
        if request_id is None:
            return self._auth
        return {**self._auth, "x-request-id": request_id, "content-type": "application/json"}


class UpstreamResponse(msgspec.Struct):
    status_code: int
    content: bytes
    content_type: str


class UpstreamPool:
    """Every configured upstream behind one ``httpx.AsyncClient``."""

    def __init__(
        self, upstreams: Iterable[UpstreamSettings], client: httpx.AsyncClient, metrics: GatewayMetrics
    ):
        self.upstreams = [Upstream(settings) for settings in upstreams]
        self._client = client
        self._metrics = metrics
        self._by_model: dict[str, Upstream] = {}
        self._last_discovery = 0.0
        self._reindex()

    def _reindex(self) -> None:
        # A model listed in the config beats one an upstream reported itself; among equals, the first
        # upstream in the config wins.
        by_model: dict[str, Upstream] = {}
        for upstream in sorted(self.upstreams, key=lambda u: u.discovers_models):
            for model in sorted(upstream.models):
                by_model.setdefault(model, upstream)
        self._by_model = by_model

    async def discover(self) -> None:
        """Ask every upstream configured without a model list which models it serves."""
        self._last_discovery = time.monotonic()
        discovering = [u for u in self.upstreams if u.discovers_models]
        results = await asyncio.gather(*(self._list_models(u) for u in discovering), return_exceptions=True)
        for upstream, result in zip(discovering, results, strict=True):
            if isinstance(result, BaseException):
                reason = mask_credentials(str(result))
                log.warning("upstream %s: could not list its models (%s); will retry", upstream.name, reason)
            else:
                upstream.models = result
                log.info("upstream %s serves: %s", upstream.name, ", ".join(sorted(result)) or "(nothing)")
        self._reindex()

    async def _list_models(self, upstream: Upstream) -> set[str]:
        response = await self._client.get(
            f"{upstream.base_url}/models", headers=upstream.headers(), timeout=5.0
        )
        response.raise_for_status()
        return {str(card["id"]) for card in response.json().get("data", [])}

    async def route(self, model: str) -> Upstream:
        upstream = self._by_model.get(model)
        if upstream is not None:
            return upstream
        if any(u.discovers_models for u in self.upstreams) and (
            time.monotonic() - self._last_discovery > _REDISCOVER_AFTER_S
        ):
            await self.discover()
            upstream = self._by_model.get(model)
            if upstream is not None:
                return upstream
        raise ModelNotFound(model)

    def serves(self, model: str) -> bool:
        return model in self._by_model

    def model_cards(self) -> list[dict[str, Any]]:
        return [
            {"id": model, "object": "model", "created": 0, "owned_by": upstream.name}
            for model, upstream in sorted(self._by_model.items())
        ]

    async def reachability(self) -> dict[str, str]:
        async def probe(upstream: Upstream) -> str:
            try:
                response = await self._client.get(
                    f"{upstream.base_url}/models", headers=upstream.headers(), timeout=2.0
                )
            except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # a probe reports, never raises
                return f"unreachable: {type(exc).__name__}"
            return "ok" if response.status_code < 500 else f"HTTP {response.status_code}"

        states = await asyncio.gather(*(probe(u) for u in self.upstreams))
        return dict(zip((u.name for u in self.upstreams), states, strict=True))

    async def post(
        self, upstream: Upstream, path: str, body: bytes, request_id: str, method: str = "POST"
    ) -> UpstreamResponse:
        """A non-streaming call (a POST unless ``method`` says otherwise). Upstream error statuses raise
        ``UpstreamStatus``."""
        started = time.perf_counter()
        try:
            response = await self._client.request(
                method,
                upstream.base_url + path,
                content=body,
                headers=upstream.headers(request_id),
                timeout=upstream.timeout,
            )
        except httpx.HTTPError as exc:
            raise self.transport_error(upstream, exc) from None
        finally:
            self._metrics.upstream_latency.labels(upstream.name).observe(time.perf_counter() - started)
        content = upstream.scrub.bytes(response.content)
        if response.status_code >= 400:
            self._metrics.upstream_errors.labels(upstream.name, "status").inc()
            raise UpstreamStatus(response.status_code, content)
        return UpstreamResponse(
            response.status_code, content, response.headers.get("content-type", "application/json")
        )

    async def open_stream(
        self, upstream: Upstream, path: str, body: bytes, request_id: str
    ) -> httpx.Response:
        """Start a streaming call and return once the headers are in; the caller must ``aclose()`` it."""
        request = self._client.build_request(
            "POST",
            upstream.base_url + path,
            content=body,
            headers=upstream.headers(request_id),
            timeout=upstream.timeout,
        )
        started = time.perf_counter()
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self.transport_error(upstream, exc) from None
        finally:
            self._metrics.upstream_latency.labels(upstream.name).observe(time.perf_counter() - started)
        if response.status_code >= 400:
            try:
                content = await response.aread()
            except httpx.HTTPError:
                content = b""
            finally:
                await response.aclose()
            self._metrics.upstream_errors.labels(upstream.name, "status").inc()
            raise UpstreamStatus(response.status_code, upstream.scrub.bytes(content))
        return response

    def transport_error(
        self, upstream: Upstream, exc: httpx.HTTPError
    ) -> UpstreamTimeout | UpstreamUnreachable:
        if isinstance(exc, httpx.TimeoutException):
            self._metrics.upstream_errors.labels(upstream.name, "timeout").inc()
            log.warning("upstream %s timed out: %s", upstream.name, type(exc).__name__)
            return UpstreamTimeout(
                f"The upstream '{upstream.name}' did not answer in time ({type(exc).__name__})."
            )
        self._metrics.upstream_errors.labels(upstream.name, "unreachable").inc()
        reason = mask_credentials(str(exc))
        log.warning("upstream %s unreachable: %s: %s", upstream.name, type(exc).__name__, reason)
        return UpstreamUnreachable(
            f"The upstream '{upstream.name}' could not be reached ({type(exc).__name__})."
        )


def build_client(
    max_connections: int, max_keepalive: int, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    """The one pooled client for every upstream. ``transport`` replaces the network in unit tests."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive)
    return httpx.AsyncClient(
        limits=limits,
        timeout=httpx.Timeout(30.0, connect=5.0),
        transport=transport or AiohttpTransport(limits),
        follow_redirects=False,
    )
