"""A second record kind proves the engine: the docs' Task, stored, queried, SLA'd, replayed.

The Task practice of docs/practices.md (docs/examples/tasks.py) has its own workflow, verbs
and an extra indexed column, and shares nothing with incidents but the engine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from hypothesis import given
from tasks import TASK_WORKFLOW, Task, TaskState

from itsmcore import InvalidTransitionError, Priority, SLADefinition, ValidationError
from itsmcore.repository import RecordKind
from itsmcore.sla import SLAStage
from itsmcore.storage import InMemoryStore
from itsmcore.testing import RecordKindContract, histories
from test_storage import InMemory, Postgres, SQLite

TASKS: RecordKind[Task] = RecordKind("tasks", Task)
MON = datetime(2025, 3, 3, 9, tzinfo=UTC)
H = timedelta(hours=1)


def task(**fields: Any) -> Task:
    spec = {"id": "T1", "title": "Renew the certificate", "project": "web", "impact": 2,
            "urgency": 2, "at": MON, "by": "ops"} | fields  # fmt: skip
    return Task.open(**spec)


class TestTasksInMemory(InMemory, RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = TASKS


class TestTasksInSQLite(SQLite, RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = TASKS


class TestTasksInPostgres(Postgres, RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = TASKS


def test_tasks_and_incidents_share_a_store_and_keep_their_own_columns() -> None:
    from itsmcore import Incident  # noqa: PLC0415

    incidents = RecordKind("incidents", Incident)
    store = InMemoryStore(kinds=[TASKS, incidents])
    with store.unit_of_work() as uow:
        uow.tasks.add(task(id="X1"))
        uow.tasks.add(task(id="X2", project="mail").block(reason="CA", at=MON, by="kim"))
        uow.incidents.add(
            Incident.open(id="X1", title="VPN", caller="mia", impact=1, urgency=1, at=MON, by="d")
        )
        uow.commit()
    with store.unit_of_work() as uow:
        assert [t.id for t in uow.tasks.find(project="mail")] == ["X2"]
        assert [t.id for t in uow.tasks.find(state="blocked")] == ["X2"]
        assert uow.incidents.get("X1").title == "VPN"  # the same id in another kind
        assert uow.tasks.get("X1").project == "web"
        with pytest.raises(ValidationError, match="unknown filters: project"):
            uow.incidents.find(project="web")


@given(histories(Task))
def test_any_task_history_replays_and_its_state_meets_its_tags(record: Task) -> None:
    assert Task.replay(record.history) == record
    assert record.workflow is TASK_WORKFLOW
    assert record.is_active == (record.state in ("open", "blocked"))
    assert (record.blocked_by is not None) == (record.state == TaskState.BLOCKED)


def test_the_neutral_presets_read_the_tasks_tags() -> None:
    targets = dict.fromkeys(Priority, 4 * H)
    resolution = SLADefinition.resolution(targets)
    response = SLADefinition.response(targets)
    t = task().block(reason="CA", at=MON + H, by="kim")
    s = resolution.evaluate(t, at=MON + 3 * H)
    assert (s.stage, s.business_elapsed, s.business_paused) == (SLAStage.PAUSED, H, 2 * H)
    t = t.unblock(at=MON + 3 * H, by="kim")
    assert resolution.evaluate(t, at=MON + 4 * H).stage is SLAStage.IN_PROGRESS
    done = t.complete(at=MON + 5 * H, by="kim")
    s = resolution.evaluate(done, at=MON + 9 * H)
    assert (s.stage, s.business_elapsed) == (SLAStage.COMPLETED, 3 * H)
    dropped = task().cancel(reason="not needed", at=MON + H, by="ops")
    assert resolution.evaluate(dropped, at=MON + 2 * H).stage is SLAStage.CANCELED
    # Responded when it left its initial state, or when it was assigned.
    assert response.evaluate(t, at=MON + 4 * H).ended_at == MON + H
    assigned = task().assign(group="web-ops", at=MON + 2 * H, by="ops")
    assert response.evaluate(assigned, at=MON + 4 * H).ended_at == MON + 2 * H


def test_the_neutral_presets_take_another_classifier() -> None:
    by_project = SLADefinition.resolution(
        {"web": 2 * H, "mail": 8 * H}, classify=lambda r: r.project, classes={"web", "mail"}
    )
    assert by_project.evaluate(task(project="mail"), at=MON + H).target == 8 * H
    assert by_project.evaluate(task(project="web"), at=MON + H).due_at == MON + 2 * H


def test_fire_runs_the_tasks_typed_verbs() -> None:
    t = task().fire("block", reason="CA", at=MON, by="kim")
    assert (t.state, t.blocked_by) == ("blocked", "CA")
    with pytest.raises(ValidationError, match=r"runs the block verb, which takes reason="):
        task().fire("block", at=MON, by="kim")
    with pytest.raises(InvalidTransitionError):
        t.fire("complete", at=MON, by="kim")  # blocked work cannot be completed
