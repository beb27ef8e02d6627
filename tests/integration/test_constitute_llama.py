"""`hhh feedback constitute` for real: 20 red-team prompts (tests/data/red_team_prompts.jsonl, mild, our own
wording) through llama.cpp with the tiny SmolLM2 as model and critic, with the AI ranking on (llama.cpp
gives log probabilities). The tiny model's revisions are weak: this checks the mechanics, not the wisdom.
The result must load with `datasets`, be TRL's conversational SFT format and its preference format, and
train TRL's SFTTrainer (a tiny random causal LM) and the project's reward trainer for a step each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from tests.support.servers import LLAMA_ALIAS

PROMPTS = Path(__file__).resolve().parents[1] / "data" / "red_team_prompts.jsonl"


@pytest.fixture(scope="module")
def constituted(llama_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("constitute") / "out"
    command = [
        sys.executable, "-m", "gateway", "feedback", "constitute", "--prompts", str(PROMPTS),
        "--out", str(out), "--base-url", llama_url, "--model", LLAMA_ALIAS, "--ai-ranking",
        "--max-tokens", "48", "--concurrency", "2", "--format", "trl", "--format", "trl-conversational",
        "--test-fraction", "0.2",
        "--config", str(out.parent / "none.yaml"),
    ]  # fmt: skip
    (out.parent / "none.yaml").write_text(json.dumps({"data_dir": str(out.parent / "data")}))
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "of 20" in done.stdout
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "constituted 0 prompts (20 already done, 0 failed)" in again.stdout, again.stdout + again.stderr
    return out


def _rows(folder: Path) -> list[dict[str, object]]:
    loaded = datasets.load_dataset(str(folder))
    return [row for split in loaded for row in loaded[split]]


def test_twenty_prompts_become_sft_and_preference_datasets(constituted: Path) -> None:
    from trl.data_utils import is_conversational

    sft = _rows(constituted / "sft")
    state = [json.loads(line) for line in (constituted / "state.jsonl").open()]
    assert len(sft) == len(state) == 20  # none failed, none twice
    for row in sft:
        messages = row["messages"]
        assert isinstance(messages, list)
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[-1]["content"].strip()
        assert is_conversational(row)
    pairs = _rows(constituted / "preference" / "trl-conversational")
    assert pairs
    assert all(is_conversational(row) and row["source"] == "ai-feedback" for row in pairs)
    rankings = [s["ranking"] for s in state]
    assert all(r is not None for r in rankings)
    with_probabilities = [r for r in rankings if r["probability"] is not None]
    assert with_probabilities  # llama.cpp gives the first token's top log probabilities
    for ranking in with_probabilities:
        assert abs(sum(ranking["probabilities"].values()) - 1.0) < 1e-6
    card = (constituted / "README.md").read_text()
    assert f"critic: `{LLAMA_ALIAS}`" in card
    assert "First-token probabilities of A/B read for" in card


def test_trl_trains_on_the_sft_rows(constituted: Path, tmp_path: Path) -> None:
    """TRL's SFTTrainer takes the `messages` rows as they are: a tiny random Llama, a simple chat template,
    one step."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from guards.models.sentence_embeddings import default_embedding_model

    tokenizer = AutoTokenizer.from_pretrained(default_embedding_model())
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {% if m['role'] == 'assistant' %}{% generation %}"
        "{{ m['content'] }}{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}\n{% endfor %}"
    )
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=512)  # fmt: skip
    data = datasets.load_dataset(str(constituted / "sft"))["train"]
    trainer = SFTTrainer(
        model=LlamaForCausalLM(config), processing_class=tokenizer, train_dataset=data,
        args=SFTConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, report_to=[],
                       max_length=256, use_cpu=True, save_strategy="no", activation_checkpointing=False),
    )  # fmt: skip
    assert trainer.train().global_step == 1


def test_the_reward_trainer_takes_the_preference_pairs(constituted: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "feedback", "train-reward", "--data",
         str(constituted / "preference" / "trl"), "--out", str(tmp_path / "reward"), "--max-steps", "1",
         "--batch-size", "4", "--max-length", "128"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "trained 1 steps" in done.stdout
