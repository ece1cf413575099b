"""Lifecycle diagrams in docs/ are generated from the workflow tables, never drawn by hand.

A stale diagram fails this test; ``UPDATE_DOCS=1 python -m pytest tests/test_docs_diagrams.py``
rewrites the blocks between ``<!-- diagram:NAME -->`` and ``<!-- /diagram -->``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from itsmcore.incident import INCIDENT_WORKFLOW
from itsmcore.workflow import Workflow

DOCS = Path(__file__).parent.parent / "docs"
DIAGRAMS: dict[str, tuple[str, Workflow, bool]] = {
    # name: (file, workflow, draw actions too)
    "incident": ("incident.md", INCIDENT_WORKFLOW, False),
    "incident-actions": ("incident.md", INCIDENT_WORKFLOW, True),
}


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
