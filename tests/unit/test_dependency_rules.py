"""The dependency rules of docs/development.md's "How it is built", read from every import in the source:
at module level, inside functions and under ``if TYPE_CHECKING:``. Each rule is shown to fail on code
that breaks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.import_graph import Rule, Source, broken, circles, import_graph, read_sources

ROOT = Path(__file__).resolve().parents[2]

RULES = {
    "guards imports neither gateway nor feedback": Rule("guards", ("gateway", "feedback")),
    # The one exception: training reads text exactly as the reward scorer does, from the module that says
    # how (it imports nothing of the project, by the rule below).
    "feedback imports neither gateway nor guards": Rule(
        "feedback", ("gateway", "guards"), allowed=("guards.models.reward_format",)
    ),
    "the reward model's input format imports nothing of the project": Rule(
        "guards.models.reward_format", ("gateway", "guards", "feedback")
    ),
    "the relay knows nothing of guards": Rule(
        "gateway.relay", ("gateway.guarded", "gateway.routes", "gateway.app", "gateway.cli")
    ),
    "feedback's core does not import its Label Studio adapter": Rule(
        "feedback", ("feedback.labelstudio",), exempt=("feedback.labelstudio",)
    ),
}


@pytest.fixture(scope="module")
def project() -> dict[str, frozenset[str]]:
    return import_graph(read_sources(ROOT, ["gateway", "guards", "feedback"]))


def _graph(modules: dict[str, str]) -> dict[str, frozenset[str]]:
    return import_graph(Source(name, is_package=False, text=text) for name, text in modules.items())


def test_the_whole_project_is_read(project: dict[str, frozenset[str]]) -> None:
    assert {"gateway.app", "gateway.relay.proxy", "guards.pipeline", "feedback.store"} <= project.keys()
    assert "guards.verdict" in project["gateway.guarded.guardrails"]


@pytest.mark.parametrize("name", list(RULES))
def test_rule_holds(name: str, project: dict[str, frozenset[str]]) -> None:
    found = broken(RULES[name], project)
    assert not found, "\n".join(found)


def test_no_import_circles(project: dict[str, frozenset[str]]) -> None:
    found = circles(project)
    assert not found, "\n".join(" -> ".join(circle) for circle in found)


# For each rule, code that breaks it and what the checker must say: each rule is shown able to fail.
BREAKING = {
    "guards imports neither gateway nor feedback": (
        {"guards.runner": "def load():\n    from gateway.settings import Settings\n"},
        "guards.runner imports gateway.settings",
    ),
    "feedback imports neither gateway nor guards": (
        {"feedback.events": "import typing\nif typing.TYPE_CHECKING:\n    import guards.verdict\n"},
        "feedback.events imports guards.verdict",
    ),
    "the reward model's input format imports nothing of the project": (
        {"guards.models.reward_format": "from guards.verdict import Verdict\n", "guards.verdict": ""},
        "guards.models.reward_format imports guards.verdict",
    ),
    "the relay knows nothing of guards": (
        {"gateway.relay.proxy": "from ..guarded import stream_guard\n", "gateway.guarded.stream_guard": ""},
        "gateway.relay.proxy imports gateway.guarded.stream_guard",
    ),
    "feedback's core does not import its Label Studio adapter": (
        {"feedback.store": "from feedback import labelstudio\n", "feedback.labelstudio": ""},
        "feedback.store imports feedback.labelstudio",
    ),
}


def test_every_rule_is_shown_to_fail() -> None:
    assert BREAKING.keys() == RULES.keys()


@pytest.mark.parametrize("name", BREAKING)
def test_a_broken_rule_is_reported(name: str) -> None:
    modules, reported = BREAKING[name]
    assert broken(RULES[name], _graph(modules)) == [reported]


def test_the_exception_for_the_reward_format_admits_that_module_only() -> None:
    rule = RULES["feedback imports neither gateway nor guards"]
    graph = _graph(
        {
            "feedback.preferences.reward_training": "from guards.models.reward_format import reward_text\n"
            "from guards.models.reward_model import load_reward_model\n",
            "guards.models.reward_format": "",
            "guards.models.reward_model": "",
        }
    )
    assert broken(rule, graph) == ["feedback.preferences.reward_training imports guards.models.reward_model"]


def test_allowed_imports_are_not_reported() -> None:
    graph = _graph(
        {
            "gateway.guarded.guardrails": "from guards.pipeline import run\nfrom feedback import messages\n",
            "gateway.relay.proxy": "from gateway.application_errors import x\nfrom gateway import errors\n",
            "feedback.labelstudio.sync": "from feedback.labelstudio.tasks import RankingTask\n",
            "guards.pipeline": "import litestar\n",
        }
    )
    assert {name: broken(rule, graph) for name, rule in RULES.items()} == {name: [] for name in RULES}


def test_relative_imports_are_resolved() -> None:
    graph = import_graph(
        [
            Source("gateway.relay", is_package=True, text="from . import proxy\nfrom .. import errors\n"),
            Source("gateway.relay.proxy", is_package=False, text="from .scrub import scrub\n"),
            Source("gateway.relay.scrub", is_package=False, text=""),
            Source("gateway.errors", is_package=False, text=""),
        ]
    )
    assert graph["gateway.relay"] == {"gateway.relay.proxy", "gateway.errors"}
    assert graph["gateway.relay.proxy"] == {"gateway.relay.scrub"}


def test_a_circle_is_reported_in_import_order() -> None:
    graph = _graph(
        {
            "a": "import b\n",
            "b": "def later():\n    from c import name\n",  # a function-level import still closes a circle
            "c": "from a import name\n",
            "d": "import a\n",
        }
    )
    assert circles(graph) == [["a", "b", "c", "a"]]


def test_no_circle_is_reported_where_imports_only_flow_one_way() -> None:
    assert circles(_graph({"a": "import b\nimport c\n", "b": "import c\n", "c": "import os\n"})) == []
