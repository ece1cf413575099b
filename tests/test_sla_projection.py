"""SLA clocks walked on a projection of the record, against replaying the whole record.

When a definition declares the fields its conditions read, evaluation follows only those
fields through the history: the engine's fold runs on a projection of the record and only
the appliers that declare (``@applies(sets=...)``) a followed field are run. Replaying the
whole record stays the fallback and is the oracle here, on random histories (every verb of
the incident practice) and random definitions (every preset, policy, OLAs, resets, custom
classes read from edited and counted fields).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from itsmcore import Change, DefinitionError, Incident, Problem, testing
from itsmcore.capabilities import Assignable, Assigned
from itsmcore.cmdb import CIRecord
from itsmcore.events import Event
from itsmcore.incident import IncidentEscalated, IncidentLinked
from itsmcore.knowledge import KnowledgeArticle
from itsmcore.record import Opened, applies, verb
from itsmcore.request import ServiceRequest
from itsmcore.sla import (
    Reclassification,
    Reopen,
    SLADefinition,
    SLAStage,
    _Projections,
    _refuse,
    _run,
    _unchanged,
    evaluate_many,
)
from itsmcore.testing import Ticket, TicketEstimated
from itsmcore.workflow import ACTIVE, MET, Transition, Workflow
from test_sla_properties import CALENDARS, TARGETS, _wrapped

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
H = timedelta(hours=1)

gaps = st.integers(min_value=0, max_value=60 * 30).map(lambda m: timedelta(minutes=m))


def _histories(practice: type[Any], max_events: int) -> Any:
    """Random histories of ``practice``, opened within a day of T0, up to 30 h apart."""
    return partial(
        testing.histories,
        practice,
        opened=st.builds(lambda gap: T0 + gap, gaps),
        gaps=gaps,
        max_events=max_events,
    )


histories = _histories(Incident, 16)


def _met_or(field: str, at_least: int) -> Any:
    def stop(record: Any) -> bool:
        return bool(getattr(record, field) >= at_least or record.state in ("resolved", "closed"))

    return stop


@st.composite
def definitions(draw: st.DrawFn) -> SLADefinition:
    """Presets with every policy, and definitions reading fields other verbs change."""
    calendar = draw(st.sampled_from(CALENDARS))
    policy = draw(st.sampled_from(list(Reclassification)))
    reopen = draw(st.sampled_from(list(Reopen)))
    kind = draw(
        st.sampled_from(
            ["response", "resolution", "paused for", "ola", "reset", "category", "counted"]
        )
    )
    if kind == "response":
        return SLADefinition.incident_response(TARGETS, calendar, reclassification=policy)
    if kind == "ola":
        group = draw(st.sampled_from(["network", "desk", "apps"]))
        return SLADefinition.incident_ola(group, TARGETS, calendar, reclassification=policy)
    if kind == "paused for":
        return SLADefinition.incident_resolution(
            TARGETS, calendar, reopen=reopen, reclassification=policy,
            pause_on=["awaiting_caller", "awaiting_vendor"],
        )  # fmt: skip
    d = SLADefinition.incident_resolution(TARGETS, calendar, reopen=reopen, reclassification=policy)
    if kind == "reset":  # starts over whenever the incident is reassigned to the network team
        return attrs.evolve(
            d,
            reset=lambda r: r.assignment_group == "network",
            reads=(*(d.reads or ()), "assignment_group"),
        )
    if kind == "category":  # classed by a field only `update` (FieldsUpdated) changes
        return attrs.evolve(
            d,
            classify=lambda r: r.category is not None,
            classes=frozenset({True, False}),
            targets={True: 4 * H, False: 8 * H},
            reads=("state", "category"),
        )
    # Met early after enough reassignments or escalations: fields their appliers count on
    # from the record as it was (the projection follows what they read).
    field = draw(st.sampled_from(["reassignment_count", "tier", "reopen_count"]))
    return attrs.evolve(d, stop=_met_or(field, 2), reads=("state", "priority", field))


def _statuses(record: Any, defs: list[SLADefinition], at: datetime, *, replay: bool) -> list[Any]:
    now = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    walks: dict[type, Any] = {type(record): None} if replay else {}
    runs = _run(record, defs, now, walks)
    return [d._status(cycles, now, UTC) for d, cycles in zip(defs, runs, strict=True)]


@given(histories(), st.lists(definitions(), min_size=1, max_size=3), gaps)
def test_following_the_declared_fields_agrees_with_replaying_the_record(
    record: Incident, defs: list[SLADefinition], after: timedelta
) -> None:
    """The projection and the replay give every definition the same cycles and figures,
    alone and sharing one walk, now and halfway through the history."""
    _agree(record, defs, record.updated_at + after)


def _agree(record: Any, defs: list[SLADefinition], end: datetime) -> None:
    """Projection, replay, ``evaluate`` and the oracle agree at ``end`` and halfway there."""
    for at in (end, record.opened_at + (end - record.opened_at) / 2):
        followed = _statuses(record, defs, at, replay=False)
        assert followed == _statuses(record, defs, at, replay=True)
        assert followed == [d.evaluate(record, at=at) for d in defs]
        # And the oracle without declared reads, remembered answers or remembered runs.
        for d, status in zip(defs, followed, strict=True):
            oracle = attrs.evolve(d, reads=None, stop=_wrapped(d.stop), start=_wrapped(d.start))
            assert status == oracle.evaluate(record, at=at)
            assert d.next_event_at(record, at=at) == oracle.next_event_at(record, at=at)


@given(
    st.lists(histories(), min_size=1, max_size=5), st.lists(definitions(), min_size=1, max_size=3)
)
def test_evaluate_many_follows_the_fields_of_all_its_definitions(
    records: list[Incident], defs: list[SLADefinition]
) -> None:
    at = max(r.updated_at for r in records) + H
    rows = evaluate_many(records, defs, at=at)
    assert rows == [
        {"record": r.id, **d.evaluate(r, at=at).as_row()} for r in records for d in defs
    ]


def test_which_incident_events_run_their_applier_for_the_presets() -> None:
    """The resolution clock follows the state and priority: of all incident events only a
    reprioritisation runs its applier; the response clock also follows the assignment, so
    assignments and escalations do (and the fields their appliers read come along)."""
    resolution = SLADefinition.incident_resolution(TARGETS)
    response = SLADefinition.incident_response(TARGETS)
    expected = {
        resolution: {"Reprioritized"},
        response: {"Reprioritized", "Assigned", "Escalated"},
    }
    for d, run in expected.items():
        appliers = _Projections(Incident, frozenset(d.reads or ())).cls._appliers
        assert not any(a is _refuse for a in appliers.values())  # every applier declares
        ran = {
            e.__name__.removeprefix("Incident")
            for e in Incident._events.values()
            if e in appliers and appliers[e] is not _unchanged
        }
        assert ran == run, d.name
    assert {"assignment_group", "assignee", "first_assignee", "reassignment_count"} <= (
        _Projections(Incident, frozenset(response.reads or ())).followed
    )


# --------------------------------------------------------------------------- fallbacks


def test_an_event_whose_applier_declares_nothing_is_followed_by_replaying() -> None:
    """The contract ticket's estimate applier declares no fields: a clock reading the
    points replays such histories, and answers as if every snapshot were asked."""
    assert (
        _Projections(Ticket, frozenset({"state", "points"})).cls._appliers[TicketEstimated]
        is _refuse
    )
    d = SLADefinition(
        name="estimated",
        targets={None: 2 * H, 1: H, 3: 3 * H},
        stop=lambda r: r.state == "done",
        pause=lambda r: r.points == 3,
        classify=lambda r: r.points,
        classes=None,
        reads=("state", "points"),
    )
    t = Ticket.open(id="T1", title="x", at=T0, by="me")
    t = t.estimate(points=1, at=T0 + H, by="me").estimate(points=3, at=T0 + 2 * H, by="me")
    status = d.evaluate(t, at=T0 + 5 * H)
    assert (status.stage, status.key, status.business_elapsed) == (SLAStage.PAUSED, 3, 2 * H)
    oracle = attrs.evolve(d, reads=None, stop=_wrapped(d.stop))
    assert status == oracle.evaluate(t, at=T0 + 5 * H)


BUMPS = Workflow(
    name="bumps",
    states=("open", "done"),
    initial="open",
    terminal=("done",),
    transitions=(
        Transition("step", "open"),
        Transition("bump", "open"),
        Transition("assign", "open"),
        Transition("finish", "open", "done"),
    ),
    tags={ACTIVE: ("open",), MET: ("done",)},
)


@attrs.frozen(kw_only=True)
class BumpsOpened(Opened):
    type: ClassVar[str] = "sla_bumps.opened"


@attrs.frozen(kw_only=True)
class BumpsStepped(Event):
    type: ClassVar[str] = "sla_bumps.stepped"
    stride: int


@attrs.frozen(kw_only=True)
class BumpsBumped(Event):
    type: ClassVar[str] = "sla_bumps.bumped"


@attrs.frozen(kw_only=True)
class BumpsAssigned(Assigned):
    type: ClassVar[str] = "sla_bumps.assigned"


@attrs.frozen(kw_only=True)
class BumpsFinished(Event):
    type: ClassVar[str] = "sla_bumps.finished"


@attrs.frozen(kw_only=True, slots=False)
class Bumps(Assignable):
    """A level that bumps by a stride set by another event: its applier reads a field it
    does not set."""

    kind: ClassVar[str] = "sla_bumps"
    default_workflow: ClassVar[Workflow] = BUMPS
    level: int = 0
    stride: int = 1

    @classmethod
    def open(cls, *, id: str, at: datetime) -> Bumps:  # noqa: A002
        return cls._opened(
            BumpsOpened(at=at, by="me", state="open", workflow="bumps", id=id), BUMPS
        )

    @verb
    def step(self, *, stride: int, at: datetime) -> Bumps:
        return self._do("step", BumpsStepped, at, "me", stride=stride)

    @verb
    def bump(self, *, at: datetime) -> Bumps:
        return self._do("bump", BumpsBumped, at, "me")

    @verb
    def finish(self, *, at: datetime) -> Bumps:
        return self._do("finish", BumpsFinished, at, "me")

    @applies(BumpsStepped, sets=("stride",))
    def _stepped(self, e: BumpsStepped) -> Mapping[str, Any]:
        return {"stride": e.stride}

    @applies(BumpsBumped, sets=("level",))
    def _bumped(self, _e: BumpsBumped) -> Mapping[str, Any]:
        return {"level": self.level + self.stride}

    @applies(BumpsFinished, sets=())
    def _finished(self, _e: BumpsFinished) -> Mapping[str, Any]:
        return {}


def test_a_field_an_applier_reads_is_followed_from_the_next_history_on() -> None:
    """Bumping reads the stride, which the clock does not read: the first history meeting it
    is replayed, and from then on the stride is followed too; the answers never change."""
    d = SLADefinition(
        name="levels",
        targets={0: 4 * H, 1: 3 * H, 2: 2 * H, 5: H, 6: H, 7: H},
        stop=lambda r: r.state == "done",
        classify=lambda r: min(r.level, 7),
        classes=None,
        reclassification=Reclassification.RESTART,
        reads=("state", "level"),
    )
    b = Bumps.open(id="B1", at=T0).bump(at=T0 + H)
    b = b.step(stride=4, at=T0 + 2 * H).bump(at=T0 + 3 * H).finish(at=T0 + 4 * H)
    projections = _Projections(Bumps, frozenset(d.reads or ()))
    assert projections.followed == {"state", "level"}
    answers = [d.evaluate(b, at=T0 + 5 * H) for _ in range(3)]
    assert answers[0] == answers[1] == answers[2]
    assert [c.key for c in answers[0].cycles] == [0, 1, 5]
    assert "stride" in d._walks[Bumps].followed  # found by the first walk
    oracle = attrs.evolve(d, reads=None, stop=_wrapped(d.stop))
    assert answers[0] == oracle.evaluate(b, at=T0 + 5 * H)


# --------------------------------------------------------------------------- declarations


def test_applies_sets_names_fields_and_a_verb_cannot_set_more() -> None:
    with pytest.raises(DefinitionError, match="sets names nope"):

        @attrs.frozen(kw_only=True, slots=False)
        class Wrong(Bumps):
            @applies(BumpsBumped, sets=("nope",))
            def _bumped(self, _e: BumpsBumped) -> Mapping[str, Any]:
                return {}

    with pytest.raises(DefinitionError, match="collection of field names"):
        applies(BumpsBumped, sets="level")

    @attrs.frozen(kw_only=True, slots=False)
    class Sly(Bumps):
        @applies(BumpsBumped, sets=("level",))
        def _bumped(self, _e: BumpsBumped) -> Mapping[str, Any]:
            return {"level": 1, "stride": 9}

    with pytest.raises(DefinitionError, match="set stride, which its @applies"):
        Sly.open(id="S1", at=T0).bump(at=T0 + H)


def test_every_incident_applier_declares_what_it_sets() -> None:
    """A practice's appliers all declaring lets every incident event be followed."""
    assert all(w is not None for w in Incident._writes.values())
    # Escalating and linking set what their declarations say, whichever kind they are.
    assert Incident._writes[Incident._appliers[IncidentEscalated]] == {
        "hierarchical_escalations", "assignment_group", "assignee", "tier",
    }  # fmt: skip
    assert {"parent", "children", "problems", "changes", "knowledge"} == Incident._writes[
        Incident._appliers[IncidentLinked]
    ]


# --------------------------------------------------------------------------- other practices

problem_histories = _histories(Problem, 14)


@st.composite
def problem_definitions(draw: st.DrawFn) -> SLADefinition:
    """The neutral presets on a problem's workflow, and clocks reading what its appliers set."""
    calendar = draw(st.sampled_from(CALENDARS))
    policy = draw(st.sampled_from(list(Reclassification)))
    reopen = draw(st.sampled_from(list(Reopen)))
    kind = draw(st.sampled_from(["response", "resolution", "reanalysed", "workaround"]))
    if kind == "response":
        return SLADefinition.response(TARGETS, calendar, reclassification=policy)
    d = SLADefinition.resolution(TARGETS, calendar, reopen=reopen, reclassification=policy)
    if kind == "reanalysed":  # met early once the problem went back to analysis
        return attrs.evolve(
            d, stop=_met_or("reanalysis_count", 1), reads=("state", "priority", "reanalysis_count")
        )
    if kind == "workaround":  # classed by whether a workaround is recorded
        return attrs.evolve(
            d,
            classify=lambda r: r.workaround is not None,
            classes=frozenset({True, False}),
            targets={True: 8 * H, False: 4 * H},
            reads=("state", "workaround"),
        )
    return d


@given(problem_histories(), st.lists(problem_definitions(), min_size=1, max_size=3), gaps)
def test_a_problems_clocks_follow_the_fields_its_appliers_declare(
    record: Problem, defs: list[SLADefinition], after: timedelta
) -> None:
    """Problems too: the projection, the replay and the oracle give the same statuses."""
    _agree(record, defs, record.updated_at + after)


@pytest.mark.parametrize(
    "practice", [Incident, Problem, Change, ServiceRequest, KnowledgeArticle, CIRecord]
)
def test_every_practices_appliers_declare_what_they_set(practice: type[Any]) -> None:
    """Every practice's events can be followed: none falls back to replaying the record."""
    assert practice._writes
    assert all(writes is not None for writes in practice._writes.values())


def test_a_definition_pickles_as_declared_without_what_it_remembers() -> None:
    """Shipped to a worker it carries no runs or answers from records it has seen, and
    evaluates as the original does."""
    d = SLADefinition.incident_resolution(TARGETS, CALENDARS[0])
    record = Incident.open(id="I1", title="x", caller="c", impact=2, urgency=2, at=T0, by="a")
    record = record.assign(group="desk", at=T0 + H, by="a").start(at=T0 + 2 * H, by="b")
    status = d.evaluate(record, at=T0 + 5 * H)
    assert d._memo  # it remembers what it walked
    assert d._walks
    copy = pickle.loads(pickle.dumps(d))
    assert not copy._memo
    assert not copy._walks
    assert copy.evaluate(record, at=T0 + 5 * H) == status
