"""The prompt-injection guard (input only): a classifier's ``injection`` (and, where the model tells them
apart, ``jailbreak``) scores on the texts a rule's guard is configured to ``check``.

Where it looks, by the kind of each text (the gateway gives each input text's kind in
``JudgeContext.kinds``; a text of unknown kind, as in ``/v1/moderations``, counts as ``user``):

- ``user``: user messages and prompts (direct injection);
- ``tool``: tool and function results (indirect injection: what an agent fetched);
- ``sources``: items of the request's ``sources`` field (retrieved passages; the critic reads them);
- ``documents``: ``<document>...</document>`` blocks inside any message, even one whose kind is not
  checked (a system prompt that pastes retrieved text);
- ``system``, ``assistant``, ``other`` (tool definitions, names, metadata): off by default.

Every checked text is judged whole (the model's windows over it, the highest score), and the texts of one
kind in a request are also judged joined, in order, so an injection split across message parts or messages
is read in one piece; what the join finds is reported on the last text of the kind. Texts of unknown kind
(``/v1/moderations`` inputs) are separate inputs: never joined.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, Literal

import msgspec

from guards.base import GuardBase
from guards.devices import DevicePreference, Precision
from guards.documents import document_blocks
from guards.models.nanoguard_model import Padding
from guards.normalise import TextView
from guards.registry import GuardResources
from guards.runner import BatchingRunner
from guards.verdict import Evidence, JudgeContext, Stage, Verdict

Check = Literal["user", "tool", "sources", "documents", "system", "assistant", "other"]
_CHECK_OF_KIND = {"source": "sources"}


class InjectionConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``classifier: nanoguard`` is the shipped model (``metatronnanoguard``); ``huggingface`` loads
    ``model`` (an id or a local path) as a sequence classifier."""

    # nanoguard (the shipped model) or huggingface (loads model).
    classifier: Literal["nanoguard", "huggingface"] = "nanoguard"
    # huggingface: a sequence classifier's id or local path.
    model: str | None = None
    # The kinds of input text judged: user, tool, sources, documents, system, assistant, other.
    check: list[Check] = msgspec.field(default_factory=lambda: ["user", "tool", "sources", "documents"])
    # nanoguard: how a batch is padded (``guards.models.nanoguard_model``), and its windows over long texts.
    padding: Padding = "dynamic"
    # Short windows: the model mean-pools, so a short injection in a long window is diluted by the rest
    # (an injection after 3,000 tokens of filler scored 0.43 with 128-token windows, 0.99 with 64).
    window_tokens: int = 64
    # Tokens each window shares with the one before.
    window_overlap: int = 32
    # huggingface: which label is benign (default: the one named benign/safe/LABEL_0), other labels'
    # categories when their names do not say (``{"LABEL_1": "jailbreak"}``), and the window length.
    benign_label: str | None = None
    # huggingface: a category per label name, where the name does not say.
    labels: dict[str, str] = {}
    # huggingface: the window length, in tokens.
    max_length: int = 512
    # auto (CUDA in fp16 when there is a GPU, else the CPU), cpu or cuda.
    device: DevicePreference = "auto"
    # auto, fp32, fp16 (CUDA only) or bf16.
    precision: Precision = "auto"
    # Texts one model call takes at most (the shared batching runner's micro-batch).
    max_batch: int = 32
    # How long the runner waits for more texts before it runs a partial batch.
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if self.classifier == "huggingface" and not self.model:
            raise ValueError("classifier huggingface needs model (a Hugging Face id or a local path)")
        if not self.check:
            raise ValueError("check must name at least one kind of text")
        if not 16 <= self.window_tokens <= 512:
            raise ValueError("window_tokens must be between 16 and 512")


class _Piece(msgspec.Struct, frozen=True):
    owner: int  # the text whose verdict it counts for
    text: str
    what: str  # for the evidence: "text", "joined user texts", "document 2"


class InjectionGuard(GuardBase):
    kind: ClassVar[str] = "prompt_injection"
    stages: ClassVar[frozenset[Stage]] = frozenset({Stage.INPUT})
    # Read with obfuscation undone: "1gn0re prev10us 1nstruct10ns" is read as the words it spells.
    view: ClassVar[TextView] = TextView.DEOBFUSCATED
    # The gateway judges the items of the request's ``sources`` field with the rules of guards that say so.
    reads_sources: ClassVar[bool] = True
    config_type: ClassVar[type[msgspec.Struct]] = InjectionConfig
    # Measured for the shipped model on the labelled set (docs/guards/injection.md): at 0.99 it catches
    # as much as the shipped 512-token padding does at 0.9, with fewer false positives. A Hugging Face
    # model's rule sets its own (Prompt Guard's scores are calibrated around 0.5).
    default_thresholds: ClassVar[Mapping[str, float]] = {"injection": 0.99, "jailbreak": 0.99}

    def __init__(self, name: str, config: InjectionConfig, resources: GuardResources) -> None:
        super().__init__(name)
        self.config = config
        self._resources = resources
        self._runner: BatchingRunner[str, dict[str, float]] | None = None

    @property
    def categories(self) -> Sequence[str]:
        # Known before start: what a huggingface model distinguishes is only known once loaded.
        return ("injection",) if self.config.classifier == "nanoguard" else ("injection", "jailbreak")

    @property
    def checks(self) -> frozenset[str]:
        return frozenset(self.config.check)

    async def start(self) -> None:
        config = self.config
        if config.classifier == "nanoguard":
            key = (
                f"nanoguard:{config.padding}:{config.window_tokens}:{config.window_overlap}"
                f":{config.device}:{config.precision}"
            )
        else:
            key = f"injection-hf:{config.model}:{config.device}:{config.precision}:{config.max_length}"
        self._runner = await self._resources.runners.get(key, lambda: self._build(key))

    def _build(self, key: str) -> BatchingRunner[str, dict[str, float]]:
        config = self.config
        if config.classifier == "nanoguard":
            from guards.models.nanoguard_model import load_nanoguard

            loaded = load_nanoguard(
                config.device, config.precision, config.padding, config.window_tokens, config.window_overlap
            )
            shipped = loaded.predict

            def scored(texts: list[str]) -> list[dict[str, float]]:
                return [{"injection": score} for score in shipped(texts)]

            predict: Callable[[list[str]], list[dict[str, float]]] = scored
            placement = loaded.placement
        else:
            from guards.models.injection_classifier import load_injection_classifier

            assert config.model is not None
            classifier = load_injection_classifier(
                config.model,
                device=config.device,
                precision=config.precision,
                benign_label=config.benign_label,
                labels=config.labels,
                max_length=config.max_length,
                window_overlap=config.window_overlap,
            )
            predict, placement = classifier.predict, classifier.placement
        return BatchingRunner(
            f"{key}@{placement.key}",
            predict,
            max_batch=config.max_batch,
            max_wait_ms=config.max_wait_ms,
            metrics=self._resources.runners.metrics,
            warmup=["warm-up text"],
        )

    def pieces(self, texts: Sequence[str], kinds: Sequence[str], join: bool = True) -> list[_Piece]:
        """What to score: each checked text whole, the joins of each checked kind (``join``: the texts are
        one request's), and the document blocks of texts whose kind is not checked."""
        checks = self.checks
        pieces: list[_Piece] = []
        by_kind: dict[str, list[int]] = {}
        for index, (text, kind) in enumerate(zip(texts, kinds, strict=True)):
            if _CHECK_OF_KIND.get(kind, kind) in checks:
                pieces.append(_Piece(index, text, "text"))
                by_kind.setdefault(kind, []).append(index)
            elif "documents" in checks and "<" in text:
                for number, (_, body) in enumerate(document_blocks(text), 1):
                    pieces.append(_Piece(index, body, f"document {number}"))
        for kind, members in by_kind.items():
            # Sources are separate retrievals, never one text.
            if join and len(members) > 1 and kind != "source":
                joined = "\n".join(texts[index] for index in members)
                pieces.append(_Piece(members[-1], joined, f"joined {kind} texts"))
        return pieces

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        if self._runner is None:
            raise RuntimeError(f"guard {self._name} is not started")
        started = time.perf_counter()
        kinds = context.kinds if context is not None and len(context.kinds) == len(texts) else []
        # Without kinds the texts are separate inputs (``/v1/moderations``): each is judged on its own.
        pieces = self.pieces(texts, kinds or ["user"] * len(texts), join=bool(kinds))
        scored = await self._runner.run([piece.text for piece in pieces])
        latency = (time.perf_counter() - started) * 1000
        per_text: list[dict[str, float]] = [{} for _ in texts]
        evidence: list[list[Evidence]] = [[] for _ in texts]
        for piece, scores in zip(pieces, scored, strict=True):
            best = per_text[piece.owner]
            for category, score in scores.items():
                best[category] = max(score, best.get(category, 0.0))
            flagged = [c for c, s in scores.items() if c in thresholds and s >= thresholds[c]]
            if flagged and piece.what != "text":
                detail = f"{'/'.join(flagged)} in {piece.what}"
                top = max(scores.values())
                evidence[piece.owner].append(Evidence(kind="injection", detail=detail, score=top))
        verdicts = []
        for scores, found in zip(per_text, evidence, strict=True):
            flagged = [c for c, s in scores.items() if c in thresholds and s >= thresholds[c]]
            verdicts.append(
                Verdict(
                    guard=self._name,
                    allowed=not flagged,
                    scores={c: round(s, 6) for c, s in scores.items()},
                    categories=flagged,
                    evidence=found,
                    latency_ms=latency,
                )
            )
        return verdicts
