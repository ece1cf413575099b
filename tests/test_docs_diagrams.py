"""Diagrams in docs/ come from the workflow tables, and example code from its modules.

A stale diagram fails this test; ``UPDATE_DOCS=1 python -m pytest tests/test_docs_diagrams.py``
rewrites the blocks between ``<!-- diagram:NAME -->`` and ``<!-- /diagram -->``.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import pytest
from tasks import TASK_WORKFLOW

from itsmcore.change import CHANGE_WORKFLOWS
from itsmcore.incident import INCIDENT_WORKFLOW
from itsmcore.knowledge import KNOWLEDGE_WORKFLOW
from itsmcore.problem import PROBLEM_WORKFLOW
from itsmcore.request import REQUEST_WORKFLOW
from itsmcore.workflow import Workflow

DOCS = Path(__file__).parent.parent / "docs"
DIAGRAMS: dict[str, tuple[str, Workflow, bool]] = {
    # name: (file, workflow, draw actions too)
    "incident": ("incident.md", INCIDENT_WORKFLOW, False),
    "incident-actions": ("incident.md", INCIDENT_WORKFLOW, True),
    "task": ("practices.md", TASK_WORKFLOW, False),
    "problem": ("problem.md", PROBLEM_WORKFLOW, False),
    "knowledge": ("knowledge.md", KNOWLEDGE_WORKFLOW, False),
    "request": ("service-desk.md", REQUEST_WORKFLOW, False),
    **{
        f"change-{kind}": ("change.md", CHANGE_WORKFLOWS[kind], False)  # type: ignore[index]
        for kind in ("standard", "normal", "emergency")
    },
}
# Example modules the docs show whole: (page, marker name, file under docs/).
EXAMPLES = [
    ("practices.md", "tasks", "examples/tasks.py"),
    ("applications.md", "webdesk", "examples/webdesk.py"),
    ("problem.md", "after_hours", "examples/after_hours.py"),
    ("change.md", "cab", "examples/cab.py"),
    ("service-model.md", "outage", "examples/outage.py"),
]
# Example scripts whose printed output a page shows: (page, marker name, module).
OUTPUTS = [
    ("problem.md", "after_hours", "after_hours"),
    ("change.md", "cab", "cab"),
    ("service-model.md", "outage", "outage"),
]


def block(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- diagram:{re.escape(name)} -->\n```mermaid\n)(.*?)(```\n<!-- /diagram -->)",
        re.DOTALL,
    )


@pytest.mark.parametrize("name", list(DIAGRAMS))
def test_committed_diagram_matches_the_workflow_table(name: str) -> None:
    filename, workflow, actions = DIAGRAMS[name]
    path = DOCS / filename
    text = path.read_text(encoding="utf-8")
    match = block(name).search(text)
    assert match is not None, f"{filename} has no <!-- diagram:{name} --> block"
    fresh = workflow.to_mermaid(actions=actions)
    if os.environ.get("UPDATE_DOCS") == "1":
        path.write_text(block(name).sub(lambda m: m[1] + fresh + m[3], text), encoding="utf-8")
        return
    assert match[2] == fresh, (
        f"the {name} diagram in docs/{filename} is stale; regenerate it with "
        "UPDATE_DOCS=1 python -m pytest tests/test_docs_diagrams.py"
    )


@pytest.mark.parametrize(("page", "name", "source"), EXAMPLES)
def test_pages_show_their_example_modules_as_they_are(page: str, name: str, source: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    pattern = rf"<!-- example:{re.escape(name)} -->\n```python\n(.*?)```\n<!-- /example -->"
    match = re.search(pattern, text, re.DOTALL)
    assert match is not None, f"{page} has no <!-- example:{name} --> block"
    assert match[1] == (DOCS / source).read_text(encoding="utf-8"), (
        f"docs/{page} no longer shows docs/{source} as it is"
    )


@pytest.mark.parametrize(("page", "name", "module"), OUTPUTS)
def test_pages_show_what_their_example_scripts_print(
    page: str, name: str, module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    pattern = rf"<!-- output:{re.escape(name)} -->\n```text\n(.*?)```\n<!-- /output -->"
    match = re.search(pattern, text, re.DOTALL)
    assert match is not None, f"{page} has no <!-- output:{name} --> block"
    importlib.import_module(module).main()
    assert capsys.readouterr().out == match[1], f"docs/{page} no longer shows what {module} prints"
