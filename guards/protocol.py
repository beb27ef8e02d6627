"""The one protocol every guard implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Protocol

import msgspec

from guards.verdict import JudgeContext, Stage, Verdict


class Guard(Protocol):
    """A judge of text. One class per module; see ``guards.registry`` for how they are found.

    ``judge`` takes a batch so that models see batches; ``thresholds`` come from the policy rule that
    runs the guard, so one loaded model serves tenants with different thresholds.

    The texts are a normalised view (``guards.normalise``): canonical, unless the guard declares another
    as a ``view`` class attribute (optional, so guards written before it still work). Spans and evidence
    refer to the view; the pipeline maps them back to the original text.
    """

    kind: ClassVar[str]
    stages: ClassVar[frozenset[Stage]]
    config_type: ClassVar[type[msgspec.Struct]]
    default_thresholds: ClassVar[Mapping[str, float]]

    @property
    def name(self) -> str: ...

    @property
    def categories(self) -> Sequence[str]: ...

    async def start(self) -> None:
        """Load models and warm them up (called once, by the app's lifespan)."""

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]: ...

    async def close(self) -> None: ...
