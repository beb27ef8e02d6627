"""`hhh feedback constitute` against a scripted OpenAI-compatible server playing model and critic: the
calls it makes, failures counted and not fatal, resuming after a kill without duplicates, the RL-CAI
ranking with and without log probabilities, the datasets and card, recording for the export, and
options that are wrong named in the error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis.asyncio

from feedback.constitute.critic import ChatClient, letter_probabilities
from feedback.constitute.output import write_outputs
from feedback.constitute.prompts import Prompt, load_prompts
from feedback.constitute.run import ConstituteOptions, constitute_all, constitute_one, draw, principle_pool
from feedback.constitute.state import RunState
from feedback.constitution import load_constitution
from gateway.cli.main import main
from tests.support.redis_server import redis_server
from tests.support.scripted_critic import KIND, RUDE, Script, scripted_server, scripted_transport

CONSTITUTION = load_constitution()
POOL = list(CONSTITUTION.principles)


def _prompts(count: int) -> list[Prompt]:
    return [
        Prompt(key=f"id:p{i}", request={"messages": [{"role": "user", "content": f"Question {i}?"}]},
               request_id=f"p{i}")
        for i in range(count)
    ]  # fmt: skip


def _client(script: Script) -> ChatClient:
    return ChatClient("http://scripted.test/v1", "sk-test", 5.0, transport=scripted_transport(script))


async def test_one_prompt_is_answered_critiqued_and_revised_against_drawn_principles() -> None:
    script = Script()
    options = ConstituteOptions(model="m", critic_model="critic", principles_per_answer=2, seed=3)
    result = await constitute_one(_client(script), options, POOL, _prompts(1)[0])
    assert result.answer == RUDE + "Question 0?"
    assert result.critique == "It calls the question stupid."
    assert result.revision == KIND + "Question 0?"  # the critic's preamble taken off
    drawn, _ = draw(POOL, 2, 3, "id:p0")
    assert result.principles == [p.id for p in drawn]
    assert len(result.principles) == 2
    answer, critique, revision = script.calls
    assert answer["model"] == "m"
    assert critique["model"] == revision["model"] == "critic"
    assert critique["temperature"] == 0.0
    for principle in drawn:
        assert principle.critique in critique["messages"][-1]["content"]
        assert principle.revision in revision["messages"][-1]["content"]
    # The same seed and key draw the same principles; another key may not.
    assert [p.id for p in draw(POOL, 2, 3, "id:p0")[0]] == result.principles


async def test_a_failed_prompt_is_counted_and_logged_not_fatal(tmp_path: Path) -> None:
    prompts = [*_prompts(3), Prompt(key="id:bad", request={"messages": [{"role": "user", "content": "FAIL"}]},
                                    request_id="bad")]  # fmt: skip
    state = RunState(tmp_path)
    state.claim({})
    summary = await constitute_all(_client(Script()), ConstituteOptions(model="m", critic_model="m"), POOL,
                                   prompts, state)  # fmt: skip
    assert (summary.done, summary.failed) == (3, 1)
    assert summary.failures == {"answer: HTTP 500 boom": 1}
    assert set(state.load()) == {"id:p0", "id:p1", "id:p2"}
    assert json.loads(state.failed_path.read_text()) == {"key": "id:bad", "reason": "answer: HTTP 500 boom"}


async def test_a_run_killed_after_some_prompts_resumes_without_duplicates(tmp_path: Path) -> None:
    prompts = _prompts(8)
    options = ConstituteOptions(model="m", critic_model="m", concurrency=1)
    state = RunState(tmp_path)
    state.claim(options.identity(CONSTITUTION))
    hanging = Script(hang_after=3)  # the fourth answer never comes: the run is killed there
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(constitute_all(_client(hanging), options, POOL, prompts, state), 1.0)
    assert len(state.load()) == 3
    with state.path.open("ab") as file:
        file.write(b'{"key": "id:p3", "torn')  # killed in the middle of a write, too
    again = Script()
    summary = await constitute_all(_client(again), options, POOL, prompts, state)
    assert (summary.skipped, summary.done, again.answers) == (3, 5, 5)
    lines = state.path.read_text().splitlines()
    assert sorted(json.loads(line)["key"] for line in lines) == sorted(p.key for p in prompts)  # each once
    written = write_outputs(tmp_path, list(state.load().values()), ("trl",), 0.0, "hhh")
    assert written.sft == {"train": 8}
    assert written.pairs == {"train": 8}


@pytest.mark.parametrize("logprobs", [True, False])
async def test_the_ai_ranking_follows_the_critic_with_its_probability(tmp_path: Path, logprobs: bool) -> None:
    options = ConstituteOptions(model="m", critic_model="c", ai_ranking=True)
    state = RunState(tmp_path)
    state.claim({})
    script = Script(logprobs=logprobs)
    await constitute_all(_client(script), options, POOL, _prompts(10), state)
    results = list(state.load().values())
    rankings = [r.ranking for r in results if r.ranking is not None]
    assert len(rankings) == 10
    assert {r.choice for r in rankings} == {"revision"}
    assert {r.revision_is for r in rankings} == {"A", "B"}  # the order is drawn, not fixed
    asked = [c for c in script.calls if c["messages"][0]["content"].startswith("You compare")]
    assert all(c["logprobs"] is True and c["top_logprobs"] == 5 and c["max_tokens"] == 1 for c in asked)
    written = write_outputs(tmp_path, results, ("trl", "hh-rlhf"), 0.0, "hhh")
    rows = [json.loads(line) for path in (tmp_path / "preference" / "trl" / "jsonl").glob("*") for line in
            path.open()]  # fmt: skip
    assert written.margin is logprobs
    assert all(row["chosen"].startswith(KIND) and row["source"] == "ai-feedback" for row in rows)
    if logprobs:
        assert {r.probability for r in rankings} == {0.8}
        assert {row["margin"] for row in rows} == {0.8}
    else:
        assert {r.probability for r in rankings} == {None}
        assert all("margin" not in row for row in rows)
    hh = [json.loads(line) for path in (tmp_path / "preference" / "hh-rlhf" / "jsonl").glob("*") for line in
          path.open()]  # fmt: skip
    assert all(set(row) == {"chosen", "rejected"} for row in hh)  # no room for a source there


def test_first_token_probabilities_of_a_and_b() -> None:
    assert letter_probabilities({}) is None
    top = [{"token": "(1", "logprob": -0.5}, {"token": "2", "logprob": -0.5}]
    assert letter_probabilities({"logprobs": {"content": [{"top_logprobs": top}]}}) == {"A": 0.5, "B": 0.5}
    other = [{"token": "Sure", "logprob": -0.1}]
    assert letter_probabilities({"logprobs": {"content": [{"top_logprobs": other}]}}) is None


def test_prompt_files_and_principles_are_checked_naming_the_option(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prompt": "Hi"}\n{"messages": [{"role": "user", "content": "Yo"}]}\n')
    loaded = load_prompts(path)
    assert loaded[0].key == "id:a"
    assert loaded[1].key.startswith("sha:")
    path.write_text('{"id": "a", "prompt": "Hi"}\n{"id": "a", "prompt": "Again"}\n')
    with pytest.raises(ValueError, match=r"line 2: the same prompt as line 1"):
        load_prompts(path)
    path.write_text('{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match=r"--prompts .*line 1: needs a non-empty 'prompt'"):
        load_prompts(path)
    with pytest.raises(ValueError, match="--principle: not in the constitution: nope"):
        principle_pool(CONSTITUTION, ["nope"])
    with pytest.raises(ValueError, match="--principles-per-answer"):
        ConstituteOptions(model="m", critic_model="m", principles_per_answer=0)


def _run_cli(*args: str) -> int:
    return main(["feedback", "constitute", *args])


def test_the_command_writes_datasets_resumes_records_and_names_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(6))
    )
    out = tmp_path / "out"
    with redis_server(tmp_path) as url, scripted_server(Script()) as base:
        config = tmp_path / "gateway.yaml"
        config.write_text(json.dumps({"redis": {"url": url}, "data_dir": str(tmp_path / "data")}))
        common = ["--prompts", str(prompts), "--out", str(out), "--base-url", base, "--model", "m",
                  "--config", str(config), "--test-fraction", "0"]  # fmt: skip
        assert _run_cli(*common, "--record", "--format", "trl", "--format", "trl-conversational") == 0
        first = capsys.readouterr().out
        assert "constituted 6 prompts (0 already done, 0 failed) of 6" in first
        assert "recorded 6 revision events" in first
        assert _run_cli(*common, "--format", "trl") == 0
        assert "constituted 0 prompts (6 already done" in capsys.readouterr().out
        assert _run_cli(*common[:-2], "--test-fraction", "0", "--model", "other") == 2
        assert "--model: 'other', but --out" in capsys.readouterr().err
        assert _run_cli(*common, "--principle", "nope") == 2
        assert "--principle: not in the constitution: nope" in capsys.readouterr().err
        export = tmp_path / "export"
        code = main(["feedback", "export", "--config", str(config), "--out", str(export), "--sources",
                     "ai-feedback", "--test-fraction", "0"])  # fmt: skip
        assert code == 0
        assert "pairs by source: ai-feedback 6" in capsys.readouterr().out
        stored = asyncio.run(_revisions(url))
    assert stored == 6
    sft = [json.loads(line) for path in (out / "sft" / "jsonl").glob("*") for line in path.open()]
    assert len(sft) == 6
    assert all(row["messages"][-1] == {"role": "assistant", "content": KIND + row["messages"][0]["content"]}
               for row in sft)  # fmt: skip
    card = (out / "README.md").read_text()
    for expected in ("AI feedback, not human judgement", "critic: `m`", "Constitution: built-in",
                     "| SFT: `sft/`", "## Principles used"):  # fmt: skip
        assert expected in card, expected
    assert (out / "preference" / "trl-conversational" / "README.md").read_text().startswith("---\nconfigs:")


async def _revisions(url: str) -> int:
    client = redis.asyncio.from_url(url)
    from feedback.store import FeedbackStore

    count = len(await FeedbackStore(client).revisions("constitute"))
    await client.aclose()
    return count


def test_exactly_one_prompt_source_is_required(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _run_cli("--out", str(tmp_path), "--model", "m") == 2
    assert "--prompts FILE or --recorded: exactly one" in capsys.readouterr().err


async def _recorded(url: str) -> list[Prompt]:
    from feedback.constitute.prompts import recorded_prompts
    from feedback.events import CompletionEvent, encode_event

    client = redis.asyncio.from_url(url)

    def event(event_id: str, tenant: str, text: str, **extra: object) -> bytes:
        return encode_event(CompletionEvent(
            id=event_id, completion_id=f"c-{event_id}", created=0.0, tenant=tenant, model="m",
            endpoint="chat.completions", stream=False, choices=[], **extra,  # type: ignore[arg-type]
            request={"messages": [{"role": "user", "content": text}]},
        ))  # fmt: skip

    for fields in ({"kind": "completion", "event": event("e1", "acme", "Hi")},
                   {"kind": "completion", "event": event("e2", "acme", "Hi")},  # the same conversation
                   {"kind": "completion", "event": event("e3", "acme", "Hi", candidate_of="e1")},
                   {"kind": "feedback", "event": b"{}"},
                   {"kind": "completion", "event": event("e4", "other", "Yo")},
                   {"kind": "completion", "event": event("e5", "acme", "Bye")}):  # fmt: skip
        await client.xadd("hhh:events", fields)  # type: ignore[arg-type]
    found = [p async for p in recorded_prompts(client, "hhh:events", ("acme",), None, chunk=2)]
    limited = [p async for p in recorded_prompts(client, "hhh:events", (), 2)]
    await client.aclose()
    return found + limited


def test_recorded_prompts_are_each_conversation_once_per_tenant(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        found = asyncio.run(_recorded(url))
    assert [(p.request_id, p.tenant) for p in found] == [("e1", "acme"), ("e5", "acme"), ("e1", "acme"),
                                                         ("e4", "other")]  # fmt: skip
