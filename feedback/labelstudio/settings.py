"""Where the Label Studio project lives and how the sync and the webhook talk to it."""

from __future__ import annotations

import msgspec

from feedback.labelstudio.config import DEFAULT_BUCKETS, LAYOUTS, check_buckets

SECRET_HEADER = "X-HHH-Webhook-Secret"


class LabelStudioSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # The server's address, e.g. http://127.0.0.1:8081. Empty: there is no Label Studio to sync with.
    url: str | None = None
    # A token from the user's Account & Settings page (legacy or personal access token); use ${VAR}.
    api_key: str | None = None
    # The project's title; the sync finds or creates it by this name.
    project_title: str = "HHH Gateway rankings"
    # The address at which Label Studio reaches the gateway's webhook, e.g.
    # http://gateway:8080/v1/feedback/labelstudio. Empty: no webhook; the reconciling poll does it all.
    webhook_url: str | None = None
    # The shared secret Label Studio sends in the X-HHH-Webhook-Secret header; use ${VAR}.
    webhook_secret: str | None = None
    # What annotators see: "buckets" (drag each answer into one of ``buckets``; answers in one bucket are
    # tied) or "pairwise" (Label Studio's RLHF template: click the better of two; tasks with more than two
    # answers are then set aside). A project made before layouts existed keeps its old single list.
    layout: str = "buckets"
    buckets: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_BUCKETS))  # best first
    # Gold tasks: a JSON-lines file of prompts with a known best answer (``docs/labelling.md``).
    gold_file: str | None = None
    # The fraction of the tasks pushed that are gold tasks from gold_file, mixed into the queue. 0: none.
    gold_rate: float = 0.0
    batch_size: int = 50  # tasks per import call
    # A prompt's task is pushed once every candidate it expects has arrived, or this long after the
    # last one did (a failed candidate never arrives).
    settle_s: float = 60.0
    poll_interval_s: float = 30.0  # --watch: seconds between rounds
    # Run the sync's rounds inside the gateway process (one process to run), instead of
    # `hhh feedback sync --watch` beside it. Either way one sync runs at a time (a lock in Redis).
    run_in_gateway: bool = False
    # A prompt's recorded answers are kept this long after its task is pushed (users' thumbs about
    # them can become pairs until then); the pushed task itself, which the export reads, is kept.
    retention_days: float = 30.0
    timeout_s: float = 30.0  # one HTTP call to Label Studio
    # One-shot sync: how long to keep retrying an unreachable Label Studio before giving up (nothing is
    # lost: what was not pushed waits in Redis for the next run).
    retry_for_s: float = 120.0

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url: must start with http:// or https://")
        if self.run_in_gateway and not (self.url and self.api_key):
            raise ValueError("run_in_gateway: needs url and api_key as well")
        if self.retention_days <= 0:
            raise ValueError("retention_days: must be more than 0")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout: one of {', '.join(LAYOUTS)}")
        check_buckets(self.buckets)
        if not 0.0 <= self.gold_rate < 1.0:
            raise ValueError("gold_rate: at least 0 and below 1")
        if self.gold_rate > 0 and not self.gold_file:
            raise ValueError("gold_file: required when gold_rate is above 0")
        if self.batch_size < 1:
            raise ValueError("batch_size: must be at least 1")
        if self.webhook_url is not None and not self.webhook_secret:
            raise ValueError("webhook_secret: required when webhook_url is set")
        if self.webhook_secret is not None and len(self.webhook_secret) < 16:
            raise ValueError("webhook_secret: use at least 16 characters")
