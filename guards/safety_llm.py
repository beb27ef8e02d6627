"""The ``safety_llm`` guard (input and output): asks a safety-classifier LLM served behind an
OpenAI-compatible endpoint (vLLM, TGI, llama.cpp) whether a conversation is safe. Llama Guard 3/4,
ShieldGemma and Granite Guardian are built-in templates (``guards.safety_llm_templates``); ``custom``
takes the operator's own prompt and verdict patterns (a one-word judge with a rubric).

What one check sends:

- input: the request's texts of the kinds in ``check``, joined in order, as the user's turn (one
  conversation, so a request costs calls per window, not per message; the verdict is reported on the
  last of them). Texts of unknown kind (``/v1/moderations`` inputs) are separate inputs, judged apart;
- output: each answer (or stream window) as the agent's turn, after the request's prompt as the user's
  turn (its last ``max_prompt_chars``, for context).

Limits on what a client controls: a text longer than ``max_chars`` is judged in windows, at most
``max_windows`` of them (beyond: the head and the end are judged and the report says how much, or the
check fails, per ``overflow``); one judgement makes at most ``max_calls`` calls; at most
``max_concurrency`` calls of this guard are in flight at once, whoever sent them; markers of the model's
prompt format in client text are defused. Each call is greedy, short (``max_tokens``) and timed
(``timeout_ms``). A failed call, or an answer that is neither safe nor unsafe, fails the judgement, so the
rule's ``on_error`` applies and the report carries the reason.

Nothing runs on the event loop but I/O: the model runs on its server.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import ClassVar, Literal

import httpx
import msgspec

from guards.base import GuardBase
from guards.normalise import TextView
from guards.registry import GuardResources
from guards.safety_llm_client import SafetyCallFailed, ask, request_body
from guards.safety_llm_parse import AnswerReader, MalformedAnswer, Reading
from guards.safety_llm_templates import (
    BUILTIN,
    UNSAFE,
    Api,
    PolicyCheck,
    SafetyTemplate,
    placeholders,
)
from guards.verdict import Evidence, JudgeContext, Stage, Verdict

Template = Literal["llama_guard", "shieldgemma", "granite_guardian", "custom"]
Check = Literal["user", "system", "assistant", "tool", "other"]
DEFAULT_THRESHOLD = 0.5
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Prompt-format markers of common model families, defused in client text whatever the template.
GENERIC_RESERVED = (r"<\|[^|<>\s]{1,40}\|>", r"\[/?INST\]", r"</?\s*(start_of_turn|end_of_turn|bos|eos)\s*>")


class CustomTemplate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The operator's own judge: a prompt with placeholders (``{user}``, ``{answer}``,
    ``{conversation}``, ``{role}``, ``{categories}``), sent as one user message (``api: chat``, the
    server applies the model's chat template) or as a raw prompt (``api: completions``), and regular
    expressions for the verdict (case-insensitive). ``codes`` map category codes the answer may name
    (found by ``codes_pattern``) to gateway categories."""

    prompt: str  # the judge's prompt, with placeholders (see above)
    prompt_output: str | None = None  # None: ``prompt`` at both stages
    api: Api = "chat"  # chat: one user message, templated by the server; completions: a raw prompt
    # Case-insensitive regular expression: the answer is unsafe when it matches.
    unsafe_pattern: str = r"^\W*(unsafe|yes|fail|flagged|violation)\b"
    # Case-insensitive regular expression: the answer is safe when it matches (neither: malformed).
    safe_pattern: str = r"^\W*(safe|no|pass|ok)\b"
    codes_pattern: str | None = None  # finds the category codes an unsafe answer names
    codes: dict[str, str] = {}  # a code found by codes_pattern -> a gateway category
    max_tokens: int = 8  # the judge's answer, in tokens (1 to 512)

    def __post_init__(self) -> None:
        for key, prompt in (("prompt", self.prompt), ("prompt_output", self.prompt_output)):
            if prompt is None:
                continue
            try:
                unknown = placeholders(prompt) - (PLACEHOLDERS_ALLOWED)
            except ValueError as exc:
                raise ValueError(
                    f"{key}: malformed placeholder ({exc}); write a literal brace as {{{{ }}}}"
                ) from None
            if unknown:
                raise ValueError(
                    f"{key}: unknown placeholder(s) {', '.join(sorted(unknown))} "
                    f"(known: {', '.join(sorted(PLACEHOLDERS_ALLOWED))})"
                )
        for key, pattern in (
            ("unsafe_pattern", self.unsafe_pattern),
            ("safe_pattern", self.safe_pattern),
            ("codes_pattern", self.codes_pattern),
        ):
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{key}: not a regular expression ({exc})") from None
        if self.codes and not self.codes_pattern:
            raise ValueError("codes_pattern: needed to find the codes in an answer")
        if not 1 <= self.max_tokens <= 512:
            raise ValueError("max_tokens: must be between 1 and 512")

    def template(self) -> SafetyTemplate:
        return SafetyTemplate(
            api=self.api,
            prompt_input=self.prompt,
            prompt_output=self.prompt_output or self.prompt,
            unsafe_pattern=self.unsafe_pattern,
            safe_pattern=self.safe_pattern,
            codes_pattern=self.codes_pattern,
            codes=dict(self.codes),
            max_tokens=self.max_tokens,
        )


PLACEHOLDERS_ALLOWED = frozenset({"user", "answer", "conversation", "role", "categories", "policy"})


class SafetyLlmConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where the safety model is served and how it is asked; see the module docstring for the limits."""

    base_url: str  # the server's OpenAI-compatible root, e.g. http://vllm-guard:8000/v1
    model: str  # the model name the server serves it under
    # llama_guard, shieldgemma, granite_guardian or custom (see docs/guards/safety-llm.md).
    template: Template = "llama_guard"
    custom: CustomTemplate | None = None  # template: custom only
    api: Api | None = None  # None: the template's (see docs/guards/safety-llm.md)
    api_key_env: str | None = None  # the NAME of an environment variable holding the key; never the key
    # ShieldGemma's harm types or Granite Guardian's risks, one call each (None: the template's default).
    policies: list[str] | None = None
    # Category codes -> gateway categories, on top of (or replacing) the template's.
    categories: dict[str, str] = {}
    # The kinds of input text judged: user, system, assistant, tool, other.
    check: list[Check] = msgspec.field(
        default_factory=lambda: ["user", "system", "assistant", "tool", "other"]
    )
    logprobs: bool = True  # ask for first-token log probabilities where the template scores from them
    max_tokens: int | None = None  # None: the template's
    # Per call; under the rule's own timeout_ms (2,000 by default), which bounds the whole judgement.
    timeout_ms: int = 1500
    max_concurrency: int = 8  # calls in flight at once, across all requests
    max_chars: int = 8000  # per call, of the judged text
    window_overlap: int = 200  # characters a text's next window repeats, so a split phrase is seen whole
    max_windows: int = 4  # per text
    # Beyond max_windows: truncate judges the head and the end (the middle is not judged); error fails
    # the check, so on_error applies.
    overflow: Literal["truncate", "error"] = "truncate"
    max_prompt_chars: int = 2000  # output: the end of the request's prompt, as the user's turn
    max_calls: int = 32  # per judgement (one request's texts)

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^\s/@]+(/\S*)?$", self.base_url):
            raise ValueError("base_url: must be an http(s) URL without credentials, e.g. http://host:8000/v1")
        if not self.model.strip():
            raise ValueError("model: must name the model the server serves")
        if (self.template == "custom") != (self.custom is not None):
            raise ValueError("custom: needed with template custom, and only with it")
        if self.api_key_env is not None and not _ENV_NAME.match(self.api_key_env):
            raise ValueError("api_key_env: must be the name of an environment variable (not the key itself)")
        template = self.resolved_template()
        if self.policies is not None:
            unknown = set(self.policies) - set(template.policies)
            if unknown or not self.policies:
                known = ", ".join(sorted(template.policies)) or "none for this template"
                raise ValueError(f"policies: unknown or empty ({', '.join(sorted(unknown))}; known: {known})")
        if self.template == "shieldgemma" and self.api == "chat":
            raise ValueError("api: shieldgemma is asked with its raw prompt (api: completions)")
        if self.api == "completions" and template.prompt_input is None:
            raise ValueError(f"api: template {self.template} has no raw prompt; use api: chat")
        if not self.check:
            raise ValueError("check: must name at least one kind of text")
        if self.max_tokens is not None and not 1 <= self.max_tokens <= 512:
            raise ValueError("max_tokens: must be between 1 and 512")
        if self.timeout_ms <= 0:
            raise ValueError("timeout_ms: must be positive")
        if not 1 <= self.max_concurrency <= 1024:
            raise ValueError("max_concurrency: must be between 1 and 1024")
        if not 200 <= self.max_chars <= 1_000_000:
            raise ValueError("max_chars: must be between 200 and 1000000")
        if not 0 <= self.window_overlap < self.max_chars // 2:
            raise ValueError("window_overlap: must be at least 0 and below half of max_chars")
        if not 1 <= self.max_windows <= 64:
            raise ValueError("max_windows: must be between 1 and 64")
        if not 0 <= self.max_prompt_chars <= 1_000_000:
            raise ValueError("max_prompt_chars: must be between 0 and 1000000")
        if not 1 <= self.max_calls <= 1024:
            raise ValueError("max_calls: must be between 1 and 1024")

    def resolved_template(self) -> SafetyTemplate:
        template = self.custom.template() if self.custom is not None else BUILTIN[self.template]
        if self.categories:
            template = msgspec.structs.replace(template, codes={**template.codes, **self.categories})
        return template


class SafetyLlmError(RuntimeError):
    """A judgement that could not be made; the message is the report's reason."""


class SafetyLlmTimeout(SafetyLlmError, TimeoutError):
    """A call that timed out (the pipeline counts it as a time-out)."""


class _Call(msgspec.Struct, frozen=True):
    owner: int  # the text whose verdict it counts for
    user: str
    answer: str | None  # output stage: the judged answer
    policy: str | None  # a template policy, or None (one call judges every category)
    where: str  # for evidence: "window 2 of 3"


class SafetyLlmGuard(GuardBase):
    kind: ClassVar[str] = "safety_llm"
    stages: ClassVar[frozenset[Stage]] = frozenset({Stage.INPUT, Stage.OUTPUT})
    # Read as sent (canonical: Unicode tricks undone); a safety LLM reads obfuscated text as a person does.
    view: ClassVar[TextView] = TextView.CANONICAL
    config_type: ClassVar[type[msgspec.Struct]] = SafetyLlmConfig

    def __init__(self, name: str, config: SafetyLlmConfig, resources: GuardResources) -> None:
        super().__init__(name)
        self.config = config
        self.template = config.resolved_template()
        self.api: Api = config.api or self.template.api
        self._reader = AnswerReader(
            self.template.unsafe_pattern,
            self.template.safe_pattern,
            self.template.codes_pattern,
            self.template.unsafe_token,
            self.template.safe_token,
        )
        self._policies: list[str] = list(config.policies or self.template.default_policies)
        self._reserved = [re.compile(p) for p in (*GENERIC_RESERVED, *self.template.reserved)]
        self._metrics = resources.metrics
        self._client: httpx.AsyncClient | None = None
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        # Per instance: the categories depend on the template and the policies chosen. A request that
        # "tightens" a threshold compares against these, so every category has one.
        self.default_thresholds: Mapping[str, float] = dict.fromkeys(self.categories, DEFAULT_THRESHOLD)

    @property
    def categories(self) -> Sequence[str]:
        if self._policies:
            found = [self.template.policies[p].category for p in self._policies]
        else:
            found = list(self.template.codes.values())
        return list(dict.fromkeys([*found, UNSAFE]))

    async def start(self) -> None:
        headers = {}
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env, "")
            if not key:
                raise SafetyLlmError(
                    f"guards.{self.name}.config.api_key_env: environment variable "
                    f"{self.config.api_key_env} is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        limit = self.config.max_concurrency
        self._client = httpx.AsyncClient(
            base_url=self.config.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(self.config.timeout_ms / 1000),
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            follow_redirects=False,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- what to ask ----------------------------------------------------------------------------

    def calls(
        self, texts: Sequence[str], context: JudgeContext | None
    ) -> tuple[list[_Call], list[Evidence | None]]:
        """The calls that judge ``texts``, and per text what was left unjudged (None: nothing)."""
        config = self.config
        stage = context.stage if context is not None else Stage.INPUT
        notes: list[Evidence | None] = [None] * len(texts)
        pieces: list[tuple[int, str]] = []
        if stage is Stage.INPUT:
            kinds = context.kinds if context is not None and len(context.kinds) == len(texts) else []
            if kinds:
                checked = [i for i, kind in enumerate(kinds) if kind in config.check]
                if checked:
                    pieces.append((checked[-1], "\n\n".join(texts[i] for i in checked)))
            else:
                pieces = list(enumerate(texts))
            prompt = None
        else:
            pieces = list(enumerate(texts))
            prompt = self.defused(_tail((context.prompt if context else ""), config.max_prompt_chars))
        calls: list[_Call] = []
        for owner, text in pieces:
            if not text.strip():
                continue
            windows, gap = self.windows(text)
            if gap is not None:
                # Positions only when the judged text is the owner's own (not a join of several).
                own = text == texts[owner]
                notes[owner] = Evidence(
                    kind="truncated",
                    detail=f"characters {gap[0]}-{gap[1]} of {len(text)} not judged (max_windows)",
                    start=gap[0] if own else None,
                    end=gap[1] if own else None,
                )
            for number, window in enumerate(windows, 1):
                where = f"window {number} of {len(windows)}" if len(windows) > 1 else "text"
                safe_text = self.defused(window)
                user, answer = (safe_text, None) if prompt is None else (prompt, safe_text)
                policies: list[str | None] = list(self._policies) or [None]
                for policy in policies:
                    calls.append(_Call(owner, user, answer, policy, where))
        if len(calls) > config.max_calls:
            raise SafetyLlmError(
                f"judging this needs {len(calls)} calls to the safety model, over max_calls "
                f"({config.max_calls})"
            )
        return calls, notes

    def windows(self, text: str) -> tuple[list[str], tuple[int, int] | None]:
        """``text`` in windows of ``max_chars`` with ``window_overlap``; beyond ``max_windows``, the head
        windows and the end (``overflow: truncate``: the end is where a payload after filler would sit) or
        a failure (``overflow: error``). Also the part left unjudged (start, end), if any."""
        size, overlap, most = self.config.max_chars, self.config.window_overlap, self.config.max_windows
        if len(text) <= size:
            return [text], None
        step = size - overlap
        starts = list(range(0, len(text) - overlap, step))
        if len(starts) <= most:
            return [text[s : s + size] for s in starts], None
        if self.config.overflow == "error":
            raise SafetyLlmError(
                f"a text of {len(text)} characters needs {len(starts)} windows, over max_windows ({most})"
            )
        head = [text[s : s + size] for s in starts[: most - 1]]
        head_end = starts[most - 2] + size if most > 1 else 0
        return [*head, text[-size:]], (head_end, len(text) - size)

    def defused(self, text: str) -> str:
        """``text`` with the model's prompt-format markers made inert (in ``<|eot_id|>`` the angle
        brackets become guillemets): client text must not close the turn and answer "safe" for the
        model."""
        for pattern in self._reserved:
            text = pattern.sub(lambda m: m.group(0).replace("<", "\u2039").replace(">", "\u203a"), text)
        return text

    def content(self, call: _Call) -> list[dict[str, str]] | str:
        """What is sent: chat messages or a rendered prompt."""
        template = self.template
        prompt = template.prompt_input if call.answer is None else template.prompt_output
        if self.api == "chat" and (prompt is None or self.config.custom is None):
            # The server applies the model's own chat template (Llama Guard, Granite Guardian).
            messages = [{"role": "user", "content": call.user}]
            if call.answer is not None:
                messages.append({"role": "assistant", "content": call.answer})
            return messages
        assert prompt is not None  # checked by the config
        policy = template.policies[call.policy] if call.policy else None
        rendered = prompt.format_map(self._fields(call, policy))
        return [{"role": "user", "content": rendered}] if self.api == "chat" else rendered

    def _fields(self, call: _Call, policy: PolicyCheck | None) -> dict[str, str]:
        role = "User" if call.answer is None else "Agent"
        conversation = f"User: {call.user}"
        if call.answer is not None:
            conversation += f"\n\nAgent: {call.answer}"
        names = self.template.code_names
        categories = "\n".join(f"{code}: {names.get(code, cat)}" for code, cat in self.template.codes.items())
        text = (policy.input if call.answer is None else policy.output) if policy else ""
        return {
            "user": call.user,
            "answer": call.answer or "",
            "conversation": conversation,
            "role": role,
            "policy": text,
            "categories": categories,
        }

    # --- asking ---------------------------------------------------------------------------------

    async def _ask(self, call: _Call) -> Reading:
        if self._client is None:
            raise SafetyLlmError(f"guard {self.name} is not started")
        policy = self.template.policies[call.policy] if call.policy else None
        body = request_body(
            self.api,
            self.config.model,
            self.content(call),
            self.config.max_tokens or self.template.max_tokens,
            self.config.logprobs and self.template.unsafe_token is not None,
            dict(policy.chat_template_kwargs) if policy and self.api == "chat" else None,
        )
        async with self._semaphore:
            started = time.perf_counter()
            outcome = "ok"
            try:
                answer = await ask(self._client, self.api, body)
                return self._reader.read(answer.text, answer.top_logprobs)
            except SafetyCallFailed as exc:
                outcome = exc.kind
                failure = f"safety model {self.config.model!r}: {exc.reason}"
                if exc.kind == "timeout":
                    raise SafetyLlmTimeout(failure) from None
                raise SafetyLlmError(failure) from None
            except MalformedAnswer as exc:
                outcome = "malformed"
                raise SafetyLlmError(f"safety model {self.config.model!r}: malformed answer: {exc}") from None
            finally:
                if self._metrics is not None:
                    self._metrics.safety_llm_calls.labels(self.name, outcome).inc()
                    self._metrics.safety_llm_seconds.labels(self.name).observe(time.perf_counter() - started)

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        started = time.perf_counter()
        calls, notes = self.calls(texts, context)
        readings = await _all_or_first_failure([self._ask(call) for call in calls])
        latency = (time.perf_counter() - started) * 1000
        scores: list[dict[str, float]] = [{} for _ in texts]
        evidence: list[list[Evidence]] = [[note] if note else [] for note in notes]
        for call, reading in zip(calls, readings, strict=True):
            own = scores[call.owner]
            own[UNSAFE] = max(reading.unsafe, own.get(UNSAFE, 0.0))
            named = self._categories_of(call, reading)
            for category in named:
                own[category] = max(reading.unsafe, own.get(category, 0.0))
            if reading.unsafe >= thresholds.get(UNSAFE, DEFAULT_THRESHOLD) or any(
                reading.unsafe >= thresholds.get(c, DEFAULT_THRESHOLD) for c in named
            ):
                said = ", ".join(f"{code}: {self.template.codes.get(code, UNSAFE)}" for code in reading.codes)
                detail = f"{self.config.model} judged the {call.where} unsafe" + (
                    f" ({said})" if said else ""
                )
                if call.policy:
                    detail += f" under policy {call.policy}"
                evidence[call.owner].append(Evidence(kind="safety_llm", detail=detail, score=reading.unsafe))
        verdicts = []
        for own, found in zip(scores, evidence, strict=True):
            flagged = [c for c, s in own.items() if c != UNSAFE and s >= thresholds.get(c, DEFAULT_THRESHOLD)]
            if not flagged and own.get(UNSAFE, 0.0) >= thresholds.get(UNSAFE, DEFAULT_THRESHOLD):
                flagged = [UNSAFE]
            verdicts.append(
                Verdict(
                    guard=self.name,
                    allowed=not flagged,
                    scores={c: round(s, 6) for c, s in own.items()},
                    categories=flagged,
                    evidence=found,
                    latency_ms=latency,
                )
            )
        return verdicts

    def _categories_of(self, call: _Call, reading: Reading) -> list[str]:
        if call.policy:
            return [self.template.policies[call.policy].category]
        # A code the template does not know still counts: as plain "unsafe".
        return list(dict.fromkeys(self.template.codes.get(code, UNSAFE) for code in reading.codes))


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[len(text) - limit :]


async def _all_or_first_failure(calls: Sequence[Awaitable[Reading]]) -> list[Reading]:
    """Every call's reading, or the first failure, with the other calls cancelled (a judgement that has
    failed need not keep the model server busy)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    if not tasks:
        return []
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        failed = [task for task in tasks if task in done and not task.cancelled() and task.exception()]
        if failed:
            await asyncio.gather(*pending, return_exceptions=True)
            raise failed[0].exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
