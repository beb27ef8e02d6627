"""The labelling view in a real browser (Debian's headless Chromium, driven by Selenium), against a real
Label Studio: an annotator logs in, reads the instructions and the lettered answers, places them in
buckets and submits; the sync turns that into the right ranking, and the export into the right pairs. An
annotator who submits without placing anything is rejected at the sync, with the reason.

The answers are moved with react-beautiful-dnd's keyboard drag (focus a card, Space to lift, arrows to
move between buckets, Space to drop): the same drag the mouse makes, without a headless browser's
pointer timing. Screenshots of the view go to docs/images/ with HHH_UPDATE_SCREENSHOTS=1 (the docs use
them), and one is taken of any failure, next to the server logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
import yaml
from label_studio_sdk import LabelStudio

from feedback.events import ChoiceReport, CompletionEvent, GuardrailsReport, GuardReport, encode_event
from feedback.labelstudio.config import DRAG_LINE, bucket_name
from feedback.labelstudio.tasks import letters_to_ids
from feedback.ranking import AnnotationRecord, RankingTask
from tests.support.browser import ROOT, headless_chromium, wait_for
from tests.support.labelstudio_server import PASSWORD, TOKEN, USERNAME, LabelStudioServer
from tests.support.redis_server import redis_server

PROJECT = "browser rankings"
BUCKETS = ["Best", "Good", "Poor", "Worst"]
COLUMNS = ["_", *[bucket_name(b) for b in BUCKETS]]  # left to right: the unplaced, then the buckets
INSTRUCTIONS_TITLE = "Labeling Instructions"  # Label Studio's title of the project's instructions
# The docs' screenshots are refreshed only on request (HHH_UPDATE_SCREENSHOTS=1), so a test run leaves the
# committed images (and the git tree) alone; otherwise they go to a scratch directory.
IMAGES = (
    ROOT / "docs" / "images"
    if os.environ.get("HHH_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "hhh-labelling-screenshots"
)
ANSWERS = {"colour": ["Blue.", "Red, <PERSON> said.", "Green."], "fruit": ["Apple.", "Pear.", "Plum."]}


def _event(name: str, answers: list[str]) -> CompletionEvent:
    pii = GuardReport(guard="pii", action="redact", decision="redact")
    report = GuardrailsReport(output=[ChoiceReport(index=1, decision="redact", guards=[pii])])
    return CompletionEvent(
        id=f"browser-{name}", completion_id=f"c-{name}", created=time.time(), tenant="t", model="m",
        endpoint="chat.completions", stream=False,
        request={"messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": f"Name a {name}."}]},
        choices=[{"index": i, "message": {"role": "assistant", "content": a}} for i, a in enumerate(answers)],
        guardrails=report,
    )  # fmt: skip


def _hhh(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "feedback", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.fixture
def pushed(
    labelstudio: LabelStudioServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Path, redis.Redis, dict[str, Any], int]]:
    """Two tasks of three answers pushed by the sync to a project of the test's own; yields (config,
    redis, tasks by question, project)."""
    title = f"{PROJECT} {request.node.name.removeprefix('test_')[:30]}"
    with redis_server(tmp_path) as redis_url:
        store = redis.Redis.from_url(redis_url)
        for name, answers in ANSWERS.items():
            store.xadd("hhh:events", {"kind": "completion", "event": encode_event(_event(name, answers))})
        config = tmp_path / "gateway.yaml"
        settings = {"url": labelstudio.url, "api_key": labelstudio.token, "project_title": title,
                    "settle_s": 0, "buckets": BUCKETS}  # fmt: skip
        config.write_text(
            yaml.safe_dump({"redis": {"url": redis_url}, "feedback": {"labelstudio": settings}})
        )
        assert "tasks pushed: 2" in _hhh(config, "sync", "--flush")
        ls = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
        project = next(p for p in ls.projects.list(title=title) if p.title == title)
        tasks = {t.data["prompt"]: t for t in ls.tasks.list(project=project.id, fields="all")}
        yield config, store, tasks, int(project.id or 0)


def _stored_task(store: redis.Redis, key: str) -> RankingTask:
    return msgspec.json.decode(store.get(f"hhh:fb:task:{key}"), type=RankingTask)  # type: ignore[arg-type]


def _stored(store: redis.Redis, key: str) -> list[AnnotationRecord]:
    raw = store.hgetall(f"hhh:fb:ann:{key}")
    return [msgspec.json.decode(v, type=AnnotationRecord) for v in raw.values()]  # type: ignore[union-attr]


class Annotator:
    """What a person does in the labelling view, through the browser."""

    def __init__(self, driver: Any, url: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver, self.url, self.by = driver, url, By

    def log_in(self) -> None:
        self.driver.get(f"{self.url}/user/login/")
        wait_for(lambda: self.driver.find_elements(self.by.NAME, "email"), what="the login form")
        self.driver.find_element(self.by.NAME, "email").send_keys(USERNAME)
        self.driver.find_element(self.by.NAME, "password").send_keys(PASSWORD)
        self.driver.find_element(self.by.CSS_SELECTOR, "button[type=submit]").click()
        wait_for(lambda: "/user/login" not in self.driver.current_url, what="the login")

    def open(self, project: int, task: int) -> None:
        self.driver.get(f"{self.url}/projects/{project}/data?labeling=1&task={task}")
        wait_for(lambda: self.cards(), what="the answers")

    def cards(self) -> list[Any]:
        return list(self.driver.find_elements(self.by.CSS_SELECTOR, ".htx-ranker-item"))

    def text(self) -> str:
        return str(self.driver.find_element(self.by.TAG_NAME, "body").text)

    def close_instructions(self) -> str:
        """The instructions Label Studio shows when a task opens (the page's text while they are up)."""
        from selenium.webdriver.common.keys import Keys

        wait_for(lambda: INSTRUCTIONS_TITLE in self.text(), what="the instructions")
        shown = self.text()
        self._keys(Keys.ESCAPE)
        wait_for(lambda: INSTRUCTIONS_TITLE not in self.text(), what="the instructions to close")
        return shown

    def column_of(self, letter: str) -> str:
        card = self.driver.find_element(self.by.CSS_SELECTOR, f'[data-rbd-draggable-id="{letter}"]')
        column = card.find_element(self.by.XPATH, "ancestor::*[@data-rbd-droppable-id][1]")
        return str(column.get_attribute("data-rbd-droppable-id"))

    def place(self, letter: str, bucket: str) -> None:
        """Drags the card of ``letter`` into ``bucket`` (keyboard drag), and checks it landed there."""
        from selenium.webdriver.common.keys import Keys

        target = bucket_name(bucket)
        for _ in range(3):  # a move lost to an animation still in flight is made again
            here = self.column_of(letter)
            if here == target:
                return
            steps = COLUMNS.index(target) - COLUMNS.index(here)
            handle = self.driver.find_element(
                self.by.CSS_SELECTOR, f'[data-rbd-drag-handle-draggable-id="{letter}"]'
            )
            self.driver.execute_script("arguments[0].focus()", handle)
            self._keys(Keys.SPACE)
            for _ in range(abs(steps)):
                self._keys(Keys.ARROW_RIGHT if steps > 0 else Keys.ARROW_LEFT)
            self._keys(Keys.SPACE)
            try:
                wait_for(lambda: self.column_of(letter) == target, timeout=5, what=f"{letter} in {bucket}")
            except TimeoutError:
                continue
        assert self.column_of(letter) == target

    def submit(self, saved: Any) -> None:
        """Clicks Submit until ``saved()`` says Label Studio has the annotation (a click made while the
        editor is still starting up is ignored by it)."""
        for _ in range(3):
            buttons = [
                b for b in self.driver.find_elements(self.by.TAG_NAME, "button") if b.text.strip() == "Submit"
            ]
            if buttons:
                buttons[0].click()
            try:
                wait_for(saved, timeout=20, what="the annotation to be saved")
                return
            except TimeoutError:
                continue
        raise AssertionError("Submit did not save an annotation")

    def _keys(self, key: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(key).perform()
        time.sleep(0.25)  # pacing for the drag library's animation, not a check of speed


@pytest.fixture
def annotator(
    labelstudio: LabelStudioServer, server_logs: Path, request: pytest.FixtureRequest
) -> Iterator[Annotator]:
    with headless_chromium() as driver:
        person = Annotator(driver, labelstudio.url)
        try:
            yield person
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is None or report.failed:  # a screenshot of whatever the browser showed
                shot = server_logs / f"failure-{request.node.name}.png"
                driver.save_screenshot(str(shot))
                print(f"screenshot of the failure: {shot}")


def test_an_annotator_places_the_answers_in_buckets_and_the_sync_makes_the_ranking_and_pairs(
    pushed: tuple[Path, redis.Redis, dict[str, Any], int], annotator: Annotator, tmp_path: Path
) -> None:
    config, store, tasks, project = pushed
    task = tasks["Name a colour."]
    key = task.data["hhh_task_key"]
    letters = letters_to_ids(_stored_task(store, key))
    redacted = next(c["id"] for c in task.data["completions"] if c["body"] == ANSWERS["colour"][1])

    annotator.log_in()
    annotator.open(project, task.id)
    assert "Harmless" in annotator.close_instructions()
    IMAGES.mkdir(parents=True, exist_ok=True)
    annotator.driver.save_screenshot(str(IMAGES / "labelling-view.png"))
    page = annotator.text()
    assert "Rank the answers to this conversation" in page
    assert DRAG_LINE in page
    assert "Be brief." in page
    assert "Name a colour." in page
    titles = [c.find_element(annotator.by.TAG_NAME, "h5").text for c in annotator.cards()]
    assert sorted(t.split(" ")[1] for t in titles) == ["A", "B", "C"]
    assert [t for t in titles if "⚠" in t] == [
        f"Answer {redacted} ⚠ pii: redact"
    ]  # one badge, where a guard acted
    for absent in ("browser-colour", "Regions", "Relations"):  # no ids, no empty side panels
        assert absent not in page, absent
    assert all(annotator.column_of(letter) == "_" for letter in "ABC")  # nothing is ranked yet

    annotator.place("A", "Best")
    annotator.place("B", "Best")  # a tie: equally good
    annotator.place("C", "Worst")
    annotator.driver.save_screenshot(str(IMAGES / "labelling-placed.png"))
    annotator.submit(lambda: LabelStudio(base_url=annotator.url, api_key=TOKEN).annotations.list(id=task.id))

    received = _hhh(config, "sync")
    assert "1 new" in received, received
    assert "0 rejected" in received, received
    [record] = _stored(store, key)
    assert record.places == [[letters["A"], letters["B"]], [letters["C"]]]
    assert record.shown == [letters[x] for x in "ABC"]
    assert record.annotator in (USERNAME, "1")  # the poll sees the user's id

    out = tmp_path / "dataset"
    summary = _hhh(config, "export", "--out", str(out), "--test-fraction", "0", "--format", "trl")
    assert "exported 2 pairs" in summary, summary  # A over C and B over C; the tie gives none
    rows = [json.loads(line) for line in next((out / "jsonl").glob("train-*.jsonl")).read_text().splitlines()]
    worst = ANSWERS["colour"][int(letters["C"].rsplit(":", 1)[1])]
    assert {row["rejected"] for row in rows} == {worst}
    card = (out / "README.md").read_text()
    assert f"| {record.annotator} | 0 | n/a | 1 |" in card  # no gold task; one ranking with a known order

    annotator.driver.get(f"{annotator.url}/projects/{project}/data")
    wait_for(lambda: "Name a colour." in annotator.text(), what="the data manager")
    annotator.driver.save_screenshot(str(IMAGES / "labelling-data-manager.png"))
    headers = annotator.text()
    assert "completions" not in headers
    assert "hhh_task_key" not in headers


def test_a_submission_with_nothing_placed_is_rejected_at_the_sync(
    pushed: tuple[Path, redis.Redis, dict[str, Any], int], annotator: Annotator
) -> None:
    config, store, tasks, project = pushed
    task = tasks["Name a fruit."]
    annotator.log_in()
    annotator.open(project, task.id)
    annotator.close_instructions()
    # Submitted without placing anything.
    annotator.submit(lambda: LabelStudio(base_url=annotator.url, api_key=TOKEN).annotations.list(id=task.id))

    received = _hhh(config, "sync")
    assert "0 new" in received, received
    assert "rejected" in received, received
    assert not _stored(store, task.data["hhh_task_key"])
    # (A Submit click that Label Studio took late may also have submitted the next task, untouched too.)
    rejected = [json.loads(entry) for entry in store.lrange("hhh:fb:rejected", 0, -1)]  # type: ignore[union-attr]
    ours = [entry for entry in rejected if entry["payload"]["task"] == task.id]
    assert len(ours) == 1, rejected
    assert "left unplaced: A, B, C" in ours[0]["reason"]
