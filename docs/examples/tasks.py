"""A practice in 30 declarations: tasks that can be blocked, on itsmcore's record engine."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Self

import attrs

from itsmcore.capabilities import (
    Assignable,
    Assigned,
    Cancelable,
    Canceled,
    Prioritized,
    Reprioritized,
)
from itsmcore.events import Event
from itsmcore.priority import Impact, Priority, Urgency
from itsmcore.record import Column, Opened, applies, label, text, verb
from itsmcore.workflow import ACTIVE, CANCELED, MET, PAUSED, Transition, Workflow

if TYPE_CHECKING:
    from collections.abc import Mapping


class TaskState(StrEnum):
    OPEN = "open"
    BLOCKED = "blocked"
    DONE = "done"
    DROPPED = "dropped"


TASK_WORKFLOW = Workflow(
    name="task",
    states=tuple(TaskState),
    initial="open",
    terminal=("done", "dropped"),
    transitions=(
        Transition("block", "open", "blocked"),
        Transition("unblock", "blocked", "open"),
        Transition("complete", "open", "done"),
        Transition("cancel", ("open", "blocked"), "dropped"),
        Transition("assign", ("open", "blocked")),  # actions: the state stays
        Transition("reprioritize", ("open", "blocked")),
    ),
    tags={ACTIVE: ("open", "blocked"), PAUSED: ("blocked",), MET: ("done",),
          CANCELED: ("dropped",)},
)  # fmt: skip


@attrs.frozen(kw_only=True)
class TaskOpened(Opened):
    type: ClassVar[str] = "task.opened"
    title: str
    project: str
    impact: Impact
    urgency: Urgency
    priority: Priority
    priority_overridden: bool


@attrs.frozen(kw_only=True)
class TaskBlocked(Event):
    type: ClassVar[str] = "task.blocked"
    reason: str


@attrs.frozen(kw_only=True)
class TaskUnblocked(Event):
    type: ClassVar[str] = "task.unblocked"


@attrs.frozen(kw_only=True)
class TaskCompleted(Event):
    type: ClassVar[str] = "task.completed"


@attrs.frozen(kw_only=True)
class TaskAssigned(Assigned):  # the shared assign verb records this
    type: ClassVar[str] = "task.assigned"


@attrs.frozen(kw_only=True)
class TaskReprioritized(Reprioritized):  # the shared reprioritize verb this
    type: ClassVar[str] = "task.reprioritized"


@attrs.frozen(kw_only=True)
class TaskCanceled(Canceled):  # and the shared cancel verb this
    type: ClassVar[str] = "task.canceled"


@attrs.frozen(kw_only=True, slots=False)
class Task(Assignable, Prioritized, Cancelable):
    kind: ClassVar[str] = "task"
    state_enum: ClassVar[type[StrEnum]] = TaskState
    default_workflow: ClassVar[Workflow] = TASK_WORKFLOW
    indexed: ClassVar[tuple[Column, ...]] = (
        Column("state", str),
        Column("priority", int),
        Column("project", str),
        Column("opened_at", datetime, range=("opened_from", "opened_until")),
    )

    title: str
    project: str
    blocked_by: str | None = None

    @classmethod
    def open(
        cls, *, id: str, title: str, project: str, impact: Impact | int, urgency: Urgency | int,  # noqa: A002
        at: datetime, by: str, workflow: Workflow = TASK_WORKFLOW,
    ) -> Self:  # fmt: skip
        workflow = cls._workflow(workflow)
        event = TaskOpened(
            at=at, by=by, state=workflow.initial, workflow=workflow.name, id=label(id, "id"),
            title=text(title, "title"), project=label(project, "project"),
            **cls._priority_fields(impact, urgency),
        )  # fmt: skip
        return cls._opened(event, workflow)

    @verb
    def block(self, *, reason: str, at: datetime, by: str) -> Self:
        return self._do("block", TaskBlocked, at, by, reason=text(reason, "reason"))

    @verb
    def unblock(self, *, at: datetime, by: str) -> Self:
        return self._do("unblock", TaskUnblocked, at, by)

    @verb
    def complete(self, *, at: datetime, by: str) -> Self:
        return self._do("complete", TaskCompleted, at, by)

    @applies(TaskBlocked, sets=("blocked_by",))
    def _on_blocked(self, e: TaskBlocked) -> Mapping[str, Any]:
        return {"blocked_by": e.reason}

    @applies(TaskUnblocked, TaskCompleted, TaskCanceled, sets=("blocked_by",))
    def _on_unblocked(self, _e: Event) -> Mapping[str, Any]:
        return {"blocked_by": None}
