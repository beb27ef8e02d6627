"""The few Label Studio calls the sync makes, over the official SDK, with failures sorted into two kinds:
``LabelStudioUnavailable`` (worth retrying: down, slow, 5xx, 429) and ``LabelStudioRefused`` (not: a bad
key, a bad request). Every call goes through ``_call``."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from label_studio_sdk import AsyncLabelStudio
from label_studio_sdk.core.api_error import ApiError

from feedback.labelstudio.config import (
    CANDIDATES,
    CONVERSATION,
    INSTRUCTIONS,
    LEFT,
    RIGHT,
    is_legacy,
    ranking_config,
)
from feedback.labelstudio.errors import LabelStudioKeyRefused, LabelStudioRefused, LabelStudioUnavailable
from feedback.labelstudio.settings import SECRET_HEADER, LabelStudioSettings
from feedback.labelstudio.tasks import LAYOUT, TASK_KEY

log = logging.getLogger("hhh.labelstudio")
T = TypeVar("T")

WEBHOOK_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"]
LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # the only datetime format Label Studio's task filters accept
# The poll re-reads a little before its watermark: a task saved just before the last poll may have
# committed just after it.
POLL_OVERLAP = timedelta(seconds=60)


def _instructions_html(text: str) -> str:
    items = "".join(f"<li>{line}</li>" for line in text.splitlines()[1:])
    return f"<p>{text.splitlines()[0]}</p><ol>{items}</ol>"


# The data manager's default view: the prompt, the number of answers and the annotation count; not the
# raw JSON of the answers, nor the ids only the gateway needs.
HIDDEN_COLUMNS = [
    f"tasks:data.{name}"
    for name in (CANDIDATES, CONVERSATION, LEFT, RIGHT, "label_a", "label_b", TASK_KEY, LAYOUT, "request_id",
                 "tenant", "model")
] + ["tasks:annotations_results", "tasks:predictions_results", "tasks:predictions_score",
     "tasks:predictions_model_versions", "tasks:file_upload", "tasks:storage_filename", "tasks:avg_lead_time",
     "tasks:annotations_ids", "tasks:predictions_ids", "tasks:inner_id", "tasks:draft_exists",
     "tasks:total_predictions", "tasks:cancelled_annotations", "tasks:updated_by",
     "tasks:completed_at"]  # fmt: skip


def ls_time(value: Any) -> str:
    """A task's ``updated_at`` (a datetime or a string) in Label Studio's filter format."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return str(value.astimezone(UTC).strftime(LS_TIME))


class LabelStudioProject:
    """Opens its own HTTP client; use as an async context manager."""

    def __init__(self, settings: LabelStudioSettings, transport: httpx.AsyncBaseTransport | None = None):
        if not settings.url or not settings.api_key:
            missing = "url" if not settings.url else "api_key"
            raise ValueError(f"feedback.labelstudio.{missing}: required to sync with Label Studio")
        self.settings = settings
        # The layout of the project's tasks: the settings' layout, or "legacy" for a project whose config
        # is the old single list (kept, so its annotators' queue does not change under them).
        self.layout = settings.layout
        self._http = httpx.AsyncClient(timeout=settings.timeout_s, transport=transport)
        sdk: Any = AsyncLabelStudio  # the SDK's generated types are partial; we check what comes back
        self._ls: Any = sdk(base_url=settings.url, api_key=settings.api_key, httpx_client=self._http)

    async def __aenter__(self) -> LabelStudioProject:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def _call(self, what: str, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise LabelStudioUnavailable(f"{what}: {type(exc).__name__} {exc}".strip()) from None
        except ApiError as exc:
            status = exc.status_code or 0
            detail = exc.body.get("detail") if isinstance(exc.body, dict) else exc.body
            if status >= 500 or status in (408, 429):
                raise LabelStudioUnavailable(f"{what}: HTTP {status} {detail}") from None
            if status in (401, 403):
                raise LabelStudioKeyRefused(
                    f"{what}: Label Studio refused the key (HTTP {status}); "
                    "check feedback.labelstudio.api_key"
                ) from None
            raise LabelStudioRefused(f"{what}: HTTP {status} {detail}") from None

    async def ensure_project(self) -> int:
        """The project titled ``project_title``, made if missing; its config is brought up to date."""
        title = self.settings.project_title
        config = ranking_config(self.settings.layout, self.settings.buckets)
        found = None
        pager = await self._call("list projects", self._ls.projects.list(title=title))
        async for project in pager:
            if project.title == title:
                found = project
                break
        if found is None:
            created = await self._call(
                "create project",
                self._ls.projects.create(
                    title=title,
                    description="Rank the gateway's answers: harmless, honest, helpful.",
                    label_config=config,
                    expert_instruction=_instructions_html(INSTRUCTIONS),
                    show_instruction=True,
                ),
            )
            log.info("created Label Studio project %r (id %s)", title, created.id)
            await self._default_view(int(created.id or 0))
            return int(created.id or 0)
        project_id = int(found.id or 0)
        if is_legacy(found.label_config or ""):
            self.layout = "legacy"
            log.warning(
                "project %r (id %d) has the old single-list ranking config: kept, and new tasks go to it in "
                "that layout. To move to the %s layout, give feedback.labelstudio.project_title a new title "
                "(see docs/labelling.md, 'Migrating an old project')",
                title, project_id, self.settings.layout,
            )  # fmt: skip
            return project_id
        if (found.label_config or "").strip() != config:
            await self._call(
                "update project config",
                self._ls.projects.update(id=project_id, label_config=config),
            )
            log.info("updated the labelling config of project %r (id %d)", title, project_id)
        return project_id

    async def _default_view(self, project: int) -> None:
        """The data manager's first tab, made with the project (Label Studio makes a raw one otherwise)."""
        hidden = {"explore": HIDDEN_COLUMNS, "labeling": HIDDEN_COLUMNS}
        await self._call(
            "create the data manager view",
            self._ls.views.create(project=project, data={"title": "Tasks", "hiddenColumns": hidden}),
        )

    async def ensure_webhook(self, project: int, url: str, secret: str) -> None:
        """One webhook to ``url`` for the project, carrying the current secret."""
        hooks = await self._call("list webhooks", self._ls.webhooks.list(project=str(project)))
        for hook in hooks:
            if hook.url == url:
                if (hook.headers or {}).get(SECRET_HEADER) != secret or not hook.is_active:
                    await self._call(
                        "update webhook",
                        self._ls.webhooks.update(
                            id=int(hook.id or 0),
                            url=url,
                            headers={SECRET_HEADER: secret},
                            is_active=True,
                            send_payload=True,
                            send_for_all_actions=False,
                            actions=WEBHOOK_ACTIONS,
                        ),
                    )
                return
        await self._call(
            "create webhook",
            self._ls.webhooks.create(
                url=url,
                project=project,
                send_payload=True,
                send_for_all_actions=False,
                actions=WEBHOOK_ACTIONS,
                headers={SECRET_HEADER: secret},
            ),
        )
        log.info("registered the webhook %s for project %d", url, project)

    async def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Label Studio ids of the new tasks, in order."""
        response = await self._call(
            "import tasks",
            self._ls.projects.import_tasks(
                id=project, request=[{"data": t} for t in tasks], return_task_ids=True
            ),
        )
        ids = list(response.task_ids or [])
        if len(ids) != len(tasks):
            raise LabelStudioRefused(f"import tasks: sent {len(tasks)}, Label Studio made {len(ids)}")
        return [int(i) for i in ids]

    async def find_tasks(self, project: int, task_keys: list[str]) -> dict[str, int]:
        """Which of ``task_keys`` are already tasks of the project (after an import of unknown fate)."""
        found: dict[str, int] = {}
        for key in task_keys:
            query = {
                "filters": {
                    "conjunction": "and",
                    "items": [
                        {"filter": f"filter:tasks:data.{TASK_KEY}", "operator": "equal", "value": key,
                         "type": "String"},
                    ],
                }
            }  # fmt: skip
            pager = await self._call(
                "find task", self._ls.tasks.list(project=project, query=json.dumps(query), page_size=10)
            )
            async for task in pager:
                if (task.data or {}).get(TASK_KEY) == key:
                    found[key] = int(task.id or 0)
                    break
        return found

    async def changed_tasks(self, project: int, since: str | None) -> AsyncIterator[dict[str, Any]]:
        """Every task updated after ``since`` (all of them when None), with its annotations."""
        items = []
        if since is not None:
            after = datetime.strptime(since, LS_TIME).replace(tzinfo=UTC) - POLL_OVERLAP
            items.append(
                {"filter": "filter:tasks:updated_at", "operator": "greater", "value": after.strftime(LS_TIME),
                 "type": "Datetime"}
            )  # fmt: skip
        query = {"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:updated_at"]}
        pager = await self._call(
            "list tasks",
            self._ls.tasks.list(project=project, query=json.dumps(query), fields="all", page_size=100),
        )
        iterator = pager.__aiter__()
        while True:
            try:
                task = await self._call("list tasks", iterator.__anext__())
            except StopAsyncIteration:
                return
            yield {
                "id": task.id,
                "data": task.data or {},
                "annotations": list(task.annotations or []),
                "updated_at": ls_time(task.updated_at),
            }
