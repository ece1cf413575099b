"""The record engine: class-creation checks, fire, shared verbs, tags, workflow registry."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import attrs
import pytest

from itsmcore import (
    DefinitionError,
    HoldReason,
    Incident,
    IncidentState,
    InvalidTransitionError,
    ValidationError,
)
from itsmcore.capabilities import Assignable, Assigned
from itsmcore.events import Event, StateChanged
from itsmcore.incident import (
    INCIDENT_WORKFLOW,
    auto_close,
    auto_close_due,
    close_family,
    incident_workflow,
    link_child,
    resolve_family,
)
from itsmcore.record import Column, Opened, Record, applies, verb
from itsmcore.repository import RecordKind
from itsmcore.storage import InMemoryStore, PostgresStore, SQLiteStore
from itsmcore.storage._core import EventRow, seal
from itsmcore.workflow import ACTIVE, MET, PAUSED, Transition, Workflow

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
M = timedelta(minutes=1)


def incident(**fields: Any) -> Incident:
    spec = {"id": "INC1", "title": "Mail down", "caller": "mia", "impact": 2, "urgency": 2,
            "at": T0, "by": "desk"} | fields  # fmt: skip
    return Incident.open(**spec)


# --------------------------------------------------------------------------- class checks

FLOW = Workflow(
    name="flow",
    states=("a", "b"),
    initial="a",
    terminal=("b",),
    transitions=(Transition("go", "a", "b"),),
)


@attrs.frozen(kw_only=True)
class FlowOpened(Opened):
    type: ClassVar[str] = "flow.opened"
    title: str


@attrs.frozen(kw_only=True)
class FlowWent(Event):
    type: ClassVar[str] = "flow.went"


def test_a_practice_without_an_applier_fails_when_defined() -> None:
    with pytest.raises(DefinitionError, match=r"no applier for FlowWent \('flow.went'\)"):

        @attrs.frozen(kw_only=True, slots=False)
        class Flow(Record):
            kind: ClassVar[str] = "flow"
            default_workflow: ClassVar[Workflow] = FLOW
            title: str

            @verb
            def go(self, *, at: datetime, by: str) -> Flow:
                return self._do("go", FlowWent, at, by)


def test_a_trigger_without_a_verb_or_a_verb_without_a_trigger_fails_when_defined() -> None:
    with pytest.raises(DefinitionError, match="triggers go of its default workflow have no verb"):

        @attrs.frozen(kw_only=True, slots=False)
        class Flow(Record):
            kind: ClassVar[str] = "flow"
            default_workflow: ClassVar[Workflow] = FLOW
            title: str

            @applies(FlowWent)
            def _went(self, _e: FlowWent) -> Mapping[str, Any]:
                return {}

    with pytest.raises(DefinitionError, match="verbs stop have no trigger"):

        @attrs.frozen(kw_only=True, slots=False)
        class Flow2(Record):
            kind: ClassVar[str] = "flow"
            default_workflow: ClassVar[Workflow] = FLOW
            generic_triggers: ClassVar[frozenset[str]] = frozenset({"go"})
            title: str

            @verb
            def stop(self, *, at: datetime, by: str) -> Flow2:
                return self

            @applies(FlowWent)
            def _went(self, _e: FlowWent) -> Mapping[str, Any]:
                return {}


def test_a_capability_needs_the_practices_own_event() -> None:
    with pytest.raises(DefinitionError, match="record Assigned, so it declares exactly one"):

        @attrs.frozen(kw_only=True, slots=False)
        class Flow(Assignable):
            kind: ClassVar[str] = "flow"
            default_workflow: ClassVar[Workflow] = FLOW.derive(
                name="flow+assign", add_transitions=[Transition("assign", "a")]
            )
            generic_triggers: ClassVar[frozenset[str]] = frozenset({"go"})
            title: str

            @applies(FlowWent)
            def _went(self, _e: FlowWent) -> Mapping[str, Any]:
                return {}


def test_required_fields_must_come_from_the_opening() -> None:
    with pytest.raises(DefinitionError, match="owner have no default and FlowOpened"):

        @attrs.frozen(kw_only=True, slots=False)
        class Flow(Record):
            kind: ClassVar[str] = "flow"
            default_workflow: ClassVar[Workflow] = FLOW
            generic_triggers: ClassVar[frozenset[str]] = frozenset({"go"})
            title: str
            owner: str

            @applies(FlowWent)
            def _went(self, _e: FlowWent) -> Mapping[str, Any]:
                return {}


def test_a_type_string_belongs_to_one_class() -> None:
    with pytest.raises(DefinitionError, match=r"'incident.held' of .* is already used by"):

        @attrs.frozen(kw_only=True)
        class Held(Event):
            type: ClassVar[str] = "incident.held"


def test_a_well_formed_minimal_practice_works() -> None:
    @attrs.frozen(kw_only=True, slots=False)
    class Flow(Record):
        kind: ClassVar[str] = "flow"
        default_workflow: ClassVar[Workflow] = FLOW
        title: str

        @classmethod
        def open(cls, *, id: str, title: str, at: datetime, by: str) -> Flow:  # noqa: A002
            return cls._opened(
                FlowOpened(at=at, by=by, state="a", workflow="flow", id=id, title=title), FLOW
            )

        @verb
        def go(self, *, at: datetime, by: str) -> Flow:
            return self._do("go", FlowWent, at, by)

        @applies(FlowWent)
        def _went(self, _e: FlowWent) -> Mapping[str, Any]:
            return {"title": "gone"}

    flow = Flow.open(id="F1", title="x", at=T0, by="me").go(at=T0, by="me")
    assert (flow.state, flow.title, flow.version) == ("b", "gone", 2)
    assert Flow.replay(flow.history) == flow
    with pytest.raises(ValidationError, match="not a flow event"):
        Flow.replay([*flow.history, incident().history[0]])
    with pytest.raises(ValidationError, match="starts with an opening"):
        Flow.replay(incident().history)


# --------------------------------------------------------------------------- fire


def test_fire_runs_the_typed_verb_and_never_bypasses_it() -> None:
    held = incident().fire("hold", reason="awaiting_vendor", at=T0, by="sam")
    assert (held.state, held.hold_reason) == ("on_hold", HoldReason.AWAITING_VENDOR)
    assert held.history[-1].type == "incident.held"
    resolved = held.fire("resume", at=T0, by="sam").fire(
        "resolve", code="duplicate", notes="see INC0", at=T0, by="sam"
    )
    closed = resolved.fire("close", at=T0 + M, by="mia")
    assert closed.closed_at == T0 + M
    with pytest.raises(ValidationError, match=r"runs the hold verb, which takes reason="):
        incident().fire("hold", at=T0, by="sam")
    with pytest.raises(ValidationError, match="which takes"):
        incident().fire("start", at=T0, by="sam", colour="red")
    with pytest.raises(ValidationError, match="hold reason"):
        incident().fire("hold", reason="coffee", at=T0, by="sam")


def test_fire_records_a_state_change_for_a_trigger_without_a_verb() -> None:
    wf = INCIDENT_WORKFLOW.derive(
        name="incident+triage",
        add_states={"triage": [ACTIVE]},
        add_transitions=[
            Transition("triage", "new", "triage"),
            Transition("start", "triage", "in_progress"),
        ],
    )
    i = incident(workflow=wf).fire("triage", at=T0, by="desk", team="l1")
    assert (i.state, i.is_active) == ("triage", True)
    assert isinstance(i.history[-1], StateChanged)
    assert i.history[-1].data == (("team", "l1"),)
    assert i.start(at=T0, by="sam").state is IncidentState.IN_PROGRESS


# --------------------------------------------------------------------------- shared verbs


def test_update_records_old_and_new_values_and_checks_them() -> None:
    i = incident(ci="srv-1").update(title="Mail down in Berlin", ci=None, at=T0, by="sam")
    event = i.history[-1]
    assert event.type == "incident.updated"
    assert [(c.name, c.old, c.new) for c in event.changes] == [  # type: ignore[attr-defined]
        ("title", "Mail down", "Mail down in Berlin"),
        ("ci", "srv-1", None),
    ]
    assert (i.title, i.ci) == ("Mail down in Berlin", None)
    assert i.update(title="Mail down in Berlin", at=T0, by="sam") is i  # nothing changed
    with pytest.raises(ValidationError, match="priority cannot be updated"):
        i.update(priority="P1", at=T0, by="sam")
    with pytest.raises(ValidationError, match="title must be a non-empty string"):
        i.update(title=" ", at=T0, by="sam")
    with pytest.raises(ValidationError, match="name the fields"):
        i.update(at=T0, by="sam")
    closed = i.resolve(code="duplicate", notes="x", at=T0, by="s").close(at=T0, by="s")
    with pytest.raises(InvalidTransitionError):
        closed.update(title="Too late", at=T0, by="sam")
    with pytest.raises(InvalidTransitionError):
        closed.update(title=closed.title, at=T0, by="sam")  # a no-op is checked too
    assert Incident.replay(i.history) == i


def test_unlink_removes_a_link_and_refuses_an_unknown_one() -> None:
    i = incident().link(kind="problem", target="PRB1", at=T0, by="s")
    i = i.link(kind="problem", target="PRB2", at=T0, by="s").unlink(
        kind="Problem", target="PRB1", at=T0, by="s"
    )
    assert i.problems == ("PRB2",)
    with pytest.raises(ValidationError, match="not linked to problem 'PRB9'"):
        i.unlink(kind="problem", target="PRB9", at=T0, by="s")
    assert Incident.replay(i.history) == i


# --------------------------------------------------------------------------- records are histories


def test_constructing_a_record_directly_is_checked_against_its_history() -> None:
    i = incident().start(at=T0, by="sam")
    fields = {f.name: getattr(i, f.name) for f in attrs.fields(Incident)}
    assert Incident(**fields) == i
    with pytest.raises(ValidationError, match="id differ from what its history says"):
        attrs.evolve(i, id="INC2")
    with pytest.raises(ValidationError, match="state, title differ"):
        Incident(**{**fields, "title": "Other", "state": "resolved"})
    with pytest.raises(ValidationError, match="starts with an opening"):
        Incident(**{**fields, "history": ()})


# --------------------------------------------------------------------------- tags


APPROVALS = INCIDENT_WORKFLOW.derive(
    name="incident+approval",
    add_states={"awaiting_approval": [ACTIVE, PAUSED]},
    add_transitions=[
        Transition("request_approval", "in_progress", "awaiting_approval"),
        Transition("approve", "awaiting_approval", "in_progress"),
    ],
)


def test_tags_say_what_states_mean() -> None:
    assert INCIDENT_WORKFLOW.tagged(ACTIVE) == {"new", "in_progress", "on_hold"}
    assert INCIDENT_WORKFLOW.tagged(MET) == {"resolved", "closed"}
    assert INCIDENT_WORKFLOW.tagged("nonsense") == frozenset()
    assert APPROVALS.tagged(PAUSED) == {"on_hold", "awaiting_approval"}
    waiting = (
        incident(workflow=APPROVALS).start(at=T0, by="s").fire("request_approval", at=T0, by="s")
    )
    assert waiting.is_active
    less = APPROVALS.derive(name="x", remove_tags={PAUSED: ["awaiting_approval"]})
    assert less.tagged(PAUSED) == {"on_hold"}
    with pytest.raises(DefinitionError, match="tag 'active' names unknown state 'limbo'"):
        INCIDENT_WORKFLOW.derive(name="y", add_tags={ACTIVE: ["limbo"]})


def test_a_workflow_that_can_loop_forever_fails_when_defined() -> None:
    with pytest.raises(DefinitionError, match="a, b can never reach a terminal state"):
        Workflow(
            name="loop",
            states=("start", "a", "b", "end"),
            initial="start",
            terminal=("end",),
            transitions=(
                Transition("finish", "start", "end"),
                Transition("go", "start", "a"),
                Transition("ping", "a", "b"),
                Transition("pong", "b", "a"),
            ),
        )


def test_resolving_a_family_refuses_a_child_its_workflow_cannot_resolve() -> None:
    parent = incident(id="INC100").start(at=T0, by="s")
    child = incident(id="INC101", workflow=APPROVALS).start(at=T0, by="s")
    parent, child = link_child(parent, child, at=T0, by="desk")
    waiting = child.fire("request_approval", at=T0, by="s")
    with pytest.raises(InvalidTransitionError, match="child INC101 of INC100 cannot be resolved"):
        resolve_family(parent, [waiting], code="duplicate", notes="x", at=T0 + M, by="s")
    # Once approved, it is resolved with its parent; closing closes it too.
    approved = waiting.fire("approve", at=T0, by="cab")
    parent, (kid,) = resolve_family(parent, [approved], code="duplicate", notes="x", at=T0, by="s")
    assert kid.state == "resolved"
    parent, (kid,) = close_family(parent, [kid], at=T0 + M, by="s")
    assert kid.state == "closed"


def test_auto_close_reads_the_met_tag() -> None:
    wf = INCIDENT_WORKFLOW.derive(
        name="incident+confirm",
        add_states={"confirming": [MET]},
        add_transitions=[
            Transition("confirm", "resolved", "confirming"),
            Transition("close", "confirming", "closed"),
        ],
    )
    resolved = incident(workflow=wf).resolve(code="duplicate", notes="x", at=T0, by="s")
    confirming = resolved.fire("confirm", at=T0, by="s")
    week = T0 + timedelta(days=7)
    assert auto_close_due(confirming, at=week)
    (closed,) = auto_close([confirming], at=week)
    assert closed.state == "closed"


# --------------------------------------------------------------------------- workflows are kept


def test_a_record_is_reloaded_on_the_workflow_it_was_opened_with(tmp_path: Any) -> None:
    mine = incident_workflow({"fixed", "wontfix"}, name="incident+codes")
    record = incident(workflow=mine).resolve(code="fixed", notes="ok", at=T0, by="s")
    store = SQLiteStore(tmp_path / "desk.db")
    with (
        store.unit_of_work() as uow,
        pytest.raises(ValidationError, match="not the one registered"),
    ):
        uow.incidents.add(record)  # it could not be loaded back
    Incident.register_workflow(mine)
    with store.unit_of_work() as uow:
        uow.incidents.add(record)
        uow.commit()
    with store.unit_of_work() as uow:
        loaded = uow.incidents.get("INC1")
    assert loaded == record
    assert loaded.workflow is mine
    assert "incident+codes" in Incident.workflows()
    with pytest.raises(DefinitionError, match="named 'incident\\+codes' is registered already"):
        Incident.register_workflow(incident_workflow({"other"}, name="incident+codes"))
    with pytest.raises(ValidationError, match="opened on workflow 'incident\\+codes'"):
        Incident.replay(record.history, workflow=INCIDENT_WORKFLOW)
    # A stored name nobody registered (here: renamed in the database) is refused on load,
    # never swapped for the default.
    with sqlite3.connect(store.path) as conn:
        (data,) = conn.execute("SELECT data FROM itsm_events WHERE version = 1").fetchone()
        renamed = json.dumps({**json.loads(data), "workflow": "incident+gone"})
        conn.execute("UPDATE itsm_events SET data = ? WHERE version = 1", (renamed,))
    with store.unit_of_work() as uow, pytest.raises(DefinitionError, match="not registered"):
        uow.incidents.get("INC1")


def test_openings_stored_before_workflows_were_named_read_as_the_default(tmp_path: Any) -> None:
    record = incident().start(at=T0, by="s")
    store = SQLiteStore(tmp_path / "desk.db")
    with store.unit_of_work() as uow:
        uow.incidents.add(record)
        uow.commit()
    with sqlite3.connect(store.path) as conn:  # as schema 1 stored it: no workflow field
        type_, at, by, data = conn.execute(
            "SELECT type, at, by, data FROM itsm_events WHERE version = 1"
        ).fetchone()
        old = json.loads(data)
        del old["workflow"]
        row = EventRow(1, type_, 1, at, by, json.dumps(old))
        conn.execute(  # sealed as the store seals the rows it holds
            "UPDATE itsm_events SET data = ?, schema_version = 1, seal = ? WHERE version = 1",
            (row.data, seal("incidents", "INC1", row)),
        )
    with store.unit_of_work() as uow:
        assert uow.incidents.get("INC1") == record


# --------------------------------------------------------------------------- columns


@attrs.frozen(kw_only=True)
class NoteOpened(Opened):
    type: ClassVar[str] = "note.opened"
    title: str
    words: int


@attrs.frozen(kw_only=True)
class NoteAssigned(Assigned):
    type: ClassVar[str] = "note.assigned"


NOTE_FLOW = Workflow(
    name="note",
    states=("draft", "final"),
    initial="draft",
    terminal=("final",),
    transitions=(Transition("assign", "draft"), Transition("finish", "draft", "final")),
)


@attrs.frozen(kw_only=True)
class NoteFinished(Event):
    type: ClassVar[str] = "note.finished"


@attrs.frozen(kw_only=True, slots=False)
class Note(Assignable):
    kind: ClassVar[str] = "note"
    default_workflow: ClassVar[Workflow] = NOTE_FLOW
    indexed: ClassVar[tuple[Column, ...]] = (Column("state", str),)
    title: str
    words: int

    @classmethod
    def open(cls, *, id: str, words: int) -> Note:  # noqa: A002
        event = NoteOpened(at=T0, by="me", state="draft", workflow="note", id=id, title="t",
                           words=words)  # fmt: skip
        return cls._opened(event, NOTE_FLOW)

    @verb
    def finish(self, *, at: datetime, by: str) -> Note:
        return self._do("finish", NoteFinished, at, by)

    @applies(NoteFinished)
    def _finished(self, _e: NoteFinished) -> Mapping[str, Any]:
        return {}


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_a_column_declared_later_is_added_and_filled(
    where: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    place = str(tmp_path / "notes.db")
    if where == "postgres":
        place = request.getfixturevalue("postgres_database")

    def store(kind: RecordKind[Note]) -> Any:
        if where == "sqlite":
            return SQLiteStore(place, kinds=[kind])
        return PostgresStore(place, kinds=[kind])

    with store(RecordKind("notes", Note)).unit_of_work() as uow:
        uow.notes.add(Note.open(id="N1", words=120))
        uow.notes.add(Note.open(id="N2", words=80).assign(group="docs", at=T0, by="me"))
        uow.commit()
    more = (*Note.indexed, Column("words", int), Column("assignment_group", str))
    with store(RecordKind("notes", Note, columns=more)).unit_of_work() as uow:
        assert [n.id for n in uow.notes.find(words=120)] == ["N1"]
        assert [n.id for n in uow.notes.find(assignment_group="docs")] == ["N2"]
        assert [n.id for n in uow.notes.find(order_by="words")] == ["N2", "N1"]
    clash = RecordKind("notes", Note, columns=(Column("words", str),))
    with pytest.raises(DefinitionError, match="words is declared TEXT but the store holds"):
        store(clash)


def test_find_checks_filter_types() -> None:
    store = InMemoryStore()
    with store.unit_of_work() as uow:
        uow.incidents.add(incident())
        uow.commit()
        with pytest.raises(ValidationError, match="unknown Priority 'urgent'"):
            uow.incidents.find(priority="urgent")
        with pytest.raises(ValidationError, match="opened_from= takes an aware datetime"):
            uow.incidents.find(opened_from="2025-01-01")
        with pytest.raises(ValidationError, match="naive"):
            uow.incidents.find(opened_from=datetime(2025, 1, 1))
        with pytest.raises(ValidationError, match="offset must be a whole number"):
            uow.incidents.find(offset=2**63)
        with pytest.raises(ValidationError, match="descending must be True or False"):
            uow.incidents.find(descending="yes")
        assert [i.id for i in uow.incidents.find(state=IncidentState.NEW)] == ["INC1"]
