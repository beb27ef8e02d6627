"""Threat: a client exhausts the reward scorer, or crashes it, with a prompt or answer far longer than the
model reads, or with many answers at once.

A text is cut to ``max_length`` tokens from the left (the prompt's beginning goes first; the answer's end
and the EOS token, where the score is read, stay), and only its last ``max_length * 64`` characters are
ever tokenized, so a megabyte costs what 32 K characters cost. Many answers are cut into batches of
``max_batch`` by the shared runner. Training never sees such texts (TRL leaves them out), so the test is
that nothing breaks and what is kept is the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from guards.metrics import GuardMetrics
from guards.models.reward_format import CHARS_PER_TOKEN_KEPT, prepare_tokenizer, reward_inputs
from guards.models.reward_model import RewardModelConfig, load_reward_model, reward_scorer
from guards.runner import RunnerPool
from tests.support.reward_models import build_reward_model

MAX_LENGTH = 64
HUGE = "Tell me everything about gardening, from the very beginning. " * 20_000  # 1.2 MB


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_reward_model(tmp_path_factory.mktemp("oversized") / "bert", "bert")


def _config(model_dir: Path, **options: Any) -> RewardModelConfig:
    return RewardModelConfig(model=str(model_dir), precision="fp32", max_length=MAX_LENGTH, **options)


def _tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir))


def test_a_huge_prompt_loses_its_beginning_and_the_answer_and_end_token_stay(model_dir: Path) -> None:
    tokenizer = _tokenizer(model_dir)
    answer = " Water it weekly."
    ids = reward_inputs(tokenizer, [(HUGE, answer)], MAX_LENGTH)["input_ids"][0].tolist()
    assert len(ids) == MAX_LENGTH
    tail = tokenizer(answer + "[SEP]", add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    assert ids[-len(tail) :] == tail  # the answer, our EOS ([SEP]) and the tokenizer's own [SEP]
    assert ids[0] == tokenizer.cls_token_id
    scorer = load_reward_model(_config(model_dir))
    whole, kept = scorer.predict([(HUGE, answer), (HUGE[-2_000:], answer)])
    assert whole == pytest.approx(kept, abs=1e-5)  # only the end was ever read


def test_a_huge_answer_is_scored_on_its_end(model_dir: Path) -> None:
    scorer = load_reward_model(_config(model_dir))
    whole, kept = scorer.predict([("Can you help?", HUGE), ("", HUGE[-2_000:])])
    assert whole == pytest.approx(kept, abs=1e-5)


def test_only_the_end_of_a_huge_text_is_ever_tokenized(model_dir: Path) -> None:
    real = _tokenizer(model_dir)
    lengths: list[int] = []

    class Watching:  # the tokenizer, recording how much text it is handed
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def __call__(self, texts: list[str], **options: Any) -> Any:
            lengths.extend(len(text) for text in texts)
            return real(texts, **options)

    reward_inputs(Watching(), [(HUGE, HUGE)], MAX_LENGTH)
    assert lengths == [MAX_LENGTH * CHARS_PER_TOKEN_KEPT]


async def test_hundreds_of_answers_at_once_are_cut_into_batches_of_max_batch(model_dir: Path) -> None:
    registry = CollectorRegistry()
    pool = RunnerPool(GuardMetrics(registry))
    answers = [(f"Question {i}?", f"Answer number {i}, " + "and more words " * (i % 7)) for i in range(300)]
    try:
        scorer = await reward_scorer(_config(model_dir, max_batch=8), pool)
        rewards = await scorer.score(answers)
    finally:
        await pool.close()
    assert len(rewards) == 300
    runner = next(s.labels["runner"] for m in registry.collect() for s in m.samples if "runner" in s.labels)
    batches = registry.get_sample_value("hhh_runner_batch_size_count", {"runner": runner})
    within_eight = registry.get_sample_value("hhh_runner_batch_size_bucket", {"runner": runner, "le": "8.0"})
    assert batches is not None
    assert batches >= 300 / 8
    assert within_eight == batches  # never more than max_batch texts in one model call
    direct = load_reward_model(_config(model_dir)).predict(answers[:8])
    assert rewards[:8] == pytest.approx(direct, abs=1e-4)  # batching and padding change no reward
