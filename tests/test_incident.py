"""Incident management: the documented lifecycle as a table, and the features around it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from itsmcore import (
    BusinessCalendar,
    HoldReason,
    Incident,
    IncidentState,
    InvalidTransitionError,
    Priority,
    ValidationError,
)
from itsmcore.events import StateChanged
from itsmcore.incident import (
    INCIDENT_WORKFLOW,
    IncidentStarted,
    MajorState,
    auto_close,
    auto_close_due,
    close_family,
    incident_workflow,
    link_child,
    resolve_family,
)
from itsmcore.sla import SLADefinition
from itsmcore.workflow import Transition

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

NEW, WORK, HOLD = IncidentState.NEW, IncidentState.IN_PROGRESS, IncidentState.ON_HOLD
RESOLVED, CLOSED, CANCELED = IncidentState.RESOLVED, IncidentState.CLOSED, IncidentState.CANCELED


def opened(**overrides: Any) -> Incident:
    fields: dict[str, Any] = {
        "id": "INC1",
        "title": "E-mail is down",
        "caller": "mia",
        "impact": "2 - Medium",
        "urgency": "2 - Medium",
        "at": T0,
        "by": "desk",
    } | overrides
    return Incident.open(**fields)


def later(record: Incident) -> datetime:
    return record.updated_at + MIN


# How to bring a fresh incident into each state, by the documented paths.
REACH: dict[IncidentState, Callable[[Incident], Incident]] = {
    NEW: lambda i: i,
    WORK: lambda i: i.start(at=later(i), by="sam"),
    HOLD: lambda i: i.hold(reason=HoldReason.AWAITING_VENDOR, at=later(i), by="sam"),
    RESOLVED: lambda i: i.resolve(code="solution_provided", notes="fixed", at=later(i), by="sam"),
    CLOSED: lambda i: REACH[RESOLVED](i).close(at=later(i) + MIN, by="mia"),
    CANCELED: lambda i: i.cancel(reason="duplicate of INC0", at=later(i), by="desk"),
}

VERBS: dict[str, Callable[[Incident], Incident]] = {
    "start": lambda i: i.start(at=later(i), by="sam"),
    "hold": lambda i: i.hold(reason="awaiting_caller", at=later(i), by="sam"),
    "resume": lambda i: i.resume(at=later(i), by="sam"),
    "resolve": lambda i: i.resolve(code="workaround_provided", notes="ok", at=later(i), by="sam"),
    "reopen": lambda i: i.reopen(reason="still broken", at=later(i), by="mia"),
    "close": lambda i: i.close(at=later(i), by="mia"),
    "cancel": lambda i: i.cancel(reason="logged twice", at=later(i), by="desk"),
    "assign": lambda i: i.assign(group="network", assignee="sam", at=later(i), by="desk"),
    "escalate": lambda i: i.escalate(group="network-l2", reason="needs L2", at=later(i), by="sam"),
    "reprioritize": lambda i: i.reprioritize(
        impact=1, reason="CEO affected", at=later(i), by="sam"
    ),
    "comment": lambda i: i.comment(text="any news?", at=later(i), by="mia"),
    "link": lambda i: i.link(kind="problem", target="PRB7", at=later(i), by="sam"),
    "propose_major": lambda i: i.propose_major(reason="site down", at=later(i), by="sam"),
}

# The spec: (state, verb) -> state afterwards; None means refused (InvalidTransitionError).
# From ../shared/domain/incident.md: New -> In Progress / On Hold / Resolved / Canceled;
# In Progress <-> On Hold; In Progress -> Resolved / Canceled; Resolved -> In Progress
# (reopen) / Closed; Closed and Canceled are read-only. Actions keep the state. As real desks
# run it (the bundled ServiceNow log): On Hold also resolves, cancels and changes its hold
# reason, and a resolved incident can still be reassigned.
_ = None
EXPECTED: dict[IncidentState, dict[str, IncidentState | None]] = {
    NEW: {"start": WORK, "hold": HOLD, "resume": _, "resolve": RESOLVED, "reopen": _,
          "close": _, "cancel": CANCELED, "assign": NEW, "escalate": NEW, "reprioritize": NEW,
          "comment": NEW, "link": NEW, "propose_major": NEW},
    WORK: {"start": _, "hold": HOLD, "resume": _, "resolve": RESOLVED, "reopen": _,
           "close": _, "cancel": CANCELED, "assign": WORK, "escalate": WORK,
           "reprioritize": WORK, "comment": WORK, "link": WORK, "propose_major": WORK},
    HOLD: {"start": _, "hold": HOLD, "resume": WORK, "resolve": RESOLVED, "reopen": _,
           "close": _, "cancel": CANCELED, "assign": HOLD, "escalate": HOLD,
           "reprioritize": HOLD, "comment": HOLD, "link": HOLD, "propose_major": HOLD},
    RESOLVED: {"start": _, "hold": _, "resume": _, "resolve": _, "reopen": WORK,
               "close": CLOSED, "cancel": _, "assign": RESOLVED, "escalate": _,
               "reprioritize": _, "comment": RESOLVED, "link": RESOLVED, "propose_major": _},
    CLOSED: dict.fromkeys(VERBS),
    CANCELED: dict.fromkeys(VERBS),
}  # fmt: skip


@pytest.mark.parametrize("state", list(EXPECTED), ids=str)
@pytest.mark.parametrize("verb", list(VERBS))
def test_every_state_and_verb_behaves_as_documented(state: IncidentState, verb: str) -> None:
    before = REACH[state](opened())
    assert before.state is state
    expected = EXPECTED[state][verb]
    if expected is None:
        with pytest.raises(InvalidTransitionError) as err:
            VERBS[verb](before)
        assert err.value.trigger == verb
        assert err.value.state == state
        assert verb not in err.value.allowed
    else:
        after = VERBS[verb](before)
        assert after.state is expected
        assert after.version == before.version + 1
        assert after.history[:-1] == before.history


def test_open_derives_priority_and_records_an_override() -> None:
    incident = opened(impact="1 - High", urgency="1 - High")
    assert incident.priority is Priority.P1
    assert not incident.priority_overridden
    assert (incident.state, incident.version, incident.opened_by) == (NEW, 1, "desk")
    assert incident.history[0].type == "incident.opened"
    override = opened(impact="3 - Low", urgency="3 - Low", priority="P2")
    assert override.priority is Priority.P2
    assert override.priority_overridden
    bumped = incident.reprioritize(impact="3 - Low", reason="only one user", at=T0, by="sam")
    assert bumped.priority is Priority.P3
    assert bumped.history[-1].reason == "only one user"  # type: ignore[attr-defined]


def test_reassignments_count_group_changes_as_servicenow_does() -> None:
    # Every change of assignment group, to or from empty; a person within the same group
    # does not count; routing as the incident is logged is not a reassignment.
    i = opened(assignment_group="desk-l1")
    assert i.reassignment_count == 0
    i = i.assign(assignee="sam", at=T0, by="desk")  # picked up in the group
    assert (i.reassignment_count, i.first_assignee, i.assignment_group) == (0, "sam", "desk-l1")
    i = i.assign(assignee="kim", at=T0, by="desk")  # another person, same group
    assert i.reassignment_count == 0
    i = i.assign(group="network", at=T0, by="kim")  # another group: nobody named there yet
    assert (i.reassignment_count, i.assignee, i.first_assignee) == (1, None, "sam")
    i = i.assign(group=None, at=T0, by="kim")  # cleared: a change to empty
    assert (i.reassignment_count, i.assignment_group) == (2, None)
    i = i.assign(assignee="lee", at=T0, by="kim")  # a person without a group
    assert (i.reassignment_count, i.assignment_group, i.assignee) == (2, None, "lee")
    i = i.assign(group="network", at=T0, by="kim")  # from empty
    assert (i.reassignment_count, i.assignee) == (3, None)
    i = i.assign(group="network", assignee="lee", at=T0, by="kim").assign(
        assignee=None, at=T0, by="kim"
    )
    assert (i.reassignment_count, i.assignment_group, i.assignee) == (3, "network", None)
    later = opened().assign(group="desk-l1", at=T0, by="desk")  # routed after logging
    assert later.reassignment_count == 1
    with pytest.raises(ValidationError, match="assign a group, an assignee or both"):
        i.assign(at=T0, by="kim")


def test_functional_and_hierarchical_escalation_are_recorded_distinctly() -> None:
    i = opened().assign(group="desk-l1", assignee="sam", at=T0, by="desk")
    i = i.escalate(group="db-l2", assignee="lee", reason="needs a DBA", at=T0, by="sam")
    i = i.escalate(manager="head-of-ops", reason="P2 about to breach", at=T0, by="sam")
    assert (i.tier, i.hierarchical_escalations) == (2, 1)
    assert (i.assignment_group, i.assignee) == ("db-l2", "lee")
    kinds = [e.kind for e in i.history if e.type == "incident.escalated"]  # type: ignore[attr-defined]
    assert kinds == ["functional", "hierarchical"]
    with pytest.raises(ValidationError, match="exactly one"):
        i.escalate(reason="?", at=T0, by="sam")
    with pytest.raises(ValidationError, match="exactly one"):
        i.escalate(group="x", manager="y", reason="?", at=T0, by="sam")


def test_first_contact_resolution_is_derived() -> None:
    fixed = opened().resolve(code="solution_provided", notes="reset password", at=T0, by="desk")
    assert fixed.first_contact_resolution
    by_first = opened(assignment_group="l1", assignee="sam").resolve(
        code="solution_provided", notes="ok", at=T0, by="sam"
    )
    assert by_first.first_contact_resolution
    assert by_first.close(at=T0, by="mia").first_contact_resolution
    rerouted = opened(assignment_group="l1").assign(group="l2", assignee="sam", at=T0, by="d")
    assert not rerouted.resolve(
        code="duplicate", notes="x", at=T0, by="sam"
    ).first_contact_resolution
    escalated = (
        opened()
        .assign(group="l1", assignee="sam", at=T0, by="desk")
        .escalate(group="l2", reason="hard", at=T0, by="sam")
        .resolve(code="solution_provided", notes="ok", at=T0, by="sam")
    )
    assert not escalated.first_contact_resolution
    assert not opened().first_contact_resolution
    reopened = fixed.reopen(reason="back again", at=T0, by="mia")
    assert not reopened.resolve(
        code="duplicate", notes="x", at=T0, by="desk"
    ).first_contact_resolution


def test_resolve_reopen_keeps_count_and_clears_resolution() -> None:
    i = REACH[RESOLVED](opened())
    assert (i.resolution_code, i.resolution_notes, i.resolved_by) == (
        "solution_provided",
        "fixed",
        "sam",
    )
    i = i.reopen(reason="still broken", at=later(i), by="mia")
    assert (i.state, i.reopen_count, i.resolved_at, i.resolution_code) == (WORK, 1, None, None)
    i = i.resolve(code="solution_provided", notes="fixed again", at=later(i), by="sam")
    i = i.reopen(reason="again", at=later(i), by="mia")
    assert i.reopen_count == 2


def test_the_callers_answer_resumes_an_incident_awaiting_the_caller() -> None:
    held = REACH[WORK](opened()).hold(reason="awaiting caller", at=T0 + MIN, by="sam")
    assert held.hold_reason is HoldReason.AWAITING_CALLER
    answered = held.comment(text="it's the blue cable", from_caller=True, at=T0 + 2 * MIN, by="mia")
    assert answered.state is WORK
    assert answered.hold_reason is None
    assert [e.type for e in answered.history[-2:]] == ["incident.commented", "incident.resumed"]
    # A work note, or waiting on a vendor, does not resume.
    note = held.comment(text="pinged again", at=T0 + 2 * MIN, by="sam")
    assert note.state is HOLD
    vendor = REACH[HOLD](opened())
    assert vendor.comment(text="?", from_caller=True, at=later(vendor), by="mia").state is HOLD


def test_major_incident_procedure() -> None:
    i = REACH[WORK](opened(impact=1, urgency=1))
    with pytest.raises(InvalidTransitionError, match="not been proposed"):
        i.accept_major(at=later(i), by="mim")
    i = i.propose_major(reason="all sites down", at=later(i), by="sam")
    assert i.major is MajorState.PROPOSED
    with pytest.raises(InvalidTransitionError, match="already proposed"):
        i.propose_major(reason="again", at=later(i), by="sam")
    rejected = i.reject_major(reason="one site only", at=later(i), by="mim")
    assert rejected.major is MajorState.REJECTED
    assert (
        rejected.propose_major(reason="now all", at=later(rejected), by="sam").major == "proposed"
    )
    accepted = i.accept_major(at=later(i), by="mim")
    assert accepted.major is MajorState.ACCEPTED
    assert (accepted.history[-1].by, accepted.history[-1].at) == ("mim", later(i))


def test_links_by_id_are_kept_once_each() -> None:
    i = opened()
    i = i.link(kind="problem", target="PRB1", at=T0, by="sam")
    i = i.link(kind="change", target="CHG9", at=T0, by="sam")
    i = i.link(kind="knowledge", target="KB42", at=T0, by="sam")
    i = i.link(kind="problem", target="PRB1", at=T0, by="sam")
    assert (i.problems, i.changes, i.knowledge) == (("PRB1",), ("CHG9",), ("KB42",))
    with pytest.raises(ValidationError, match="unknown link kind 'invoice'"):
        i.link(kind="invoice", target="X", at=T0, by="sam")


def family(n: int = 3) -> tuple[Incident, list[Incident]]:
    parent = REACH[WORK](opened(id="INC100", title="Network outage"))
    children = []
    for k in range(n):
        child = opened(id=f"INC10{k + 1}", title="No internet", caller=f"user{k}")
        parent, child = link_child(parent, child, at=T0 + MIN, by="desk")
        children.append(child)
    return parent, children


def test_resolving_a_parent_resolves_its_open_children_with_a_reason() -> None:
    parent, (a, b, c) = family()
    b = b.hold(reason="awaiting vendor", at=T0 + 2 * MIN, by="sam")
    c = c.cancel(reason="duplicate", at=T0 + 2 * MIN, by="desk")
    at = T0 + timedelta(hours=1)
    parent, kids = resolve_family(
        parent, [a, b, c], code="solution_provided", notes="replaced switch", at=at, by="net"
    )
    assert parent.state is RESOLVED
    assert parent.children == {"INC101", "INC102", "INC103"}
    assert [k.state for k in kids] == [RESOLVED, RESOLVED, CANCELED]
    resolved = kids[0].history[-1]
    assert resolved.parent == "INC100"  # type: ignore[attr-defined]
    assert "Resolved with parent incident INC100: replaced switch" in kids[0].resolution_notes  # type: ignore[operator]
    assert kids[1].history[-2].type == "incident.resumed"
    assert kids[2] == c  # untouched


def test_closing_a_parent_closes_its_children() -> None:
    parent, kids = family(2)
    at = T0 + timedelta(hours=1)
    parent, kids = resolve_family(parent, kids, code="solution_provided", notes="ok", at=at, by="n")
    extra = opened(id="INC109")
    parent, extra = link_child(parent, extra, at=at, by="desk")  # linked after the fix
    parent, kids = close_family(parent, [*kids, extra], at=at + MIN, by="desk")
    assert parent.state is CLOSED
    assert [k.state for k in kids] == [CLOSED, CLOSED, CLOSED]
    assert kids[2].history[-2].type == "incident.resolved"


def test_family_links_are_checked() -> None:
    parent, (a, _b, _c) = family()
    with pytest.raises(ValidationError, match="own child"):
        link_child(parent, parent, at=T0 + MIN, by="desk")
    other = opened(id="INC200")
    with pytest.raises(ValidationError, match="already has a parent"):
        link_child(other, a, at=T0 + MIN, by="desk")
    with pytest.raises(ValidationError, match="not children of INC100"):
        resolve_family(parent, [other], code="duplicate", notes="x", at=T0 + MIN, by="desk")
    with pytest.raises(ValidationError, match="link to the top"):
        link_child(a, other, at=T0 + MIN, by="desk")


def test_auto_close_after_seven_days_excludes_major_incidents() -> None:
    resolved = REACH[RESOLVED](opened())
    major = REACH[RESOLVED](
        REACH[WORK](opened(id="INC2")).propose_major(reason="x", at=T0 + MIN, by="s")
    )
    fresh = REACH[RESOLVED](opened(id="INC3", at=T0 + timedelta(days=3)))
    working = REACH[WORK](opened(id="INC4"))
    week = resolved.resolved_at + timedelta(days=7)  # type: ignore[operator]
    assert not auto_close_due(resolved, at=week - MIN)
    assert auto_close_due(resolved, at=week)
    closed = auto_close([resolved, major, fresh, working], at=week, by="nightly")
    assert [c.id for c in closed] == ["INC1"]
    assert closed[0].state is CLOSED
    assert closed[0].history[-1].automatic  # type: ignore[attr-defined]
    assert closed[0].history[-1].by == "nightly"


def test_auto_close_can_count_business_days() -> None:
    office = BusinessCalendar.weekly({"mon-fri": "00:00-24:00"}, tz="UTC")
    resolved = REACH[RESOLVED](opened())  # Monday 09:00
    five_days = timedelta(days=5)
    assert not auto_close_due(resolved, at=T0 + timedelta(days=6), after=five_days, calendar=office)
    assert auto_close_due(
        resolved, at=T0 + timedelta(days=7, minutes=1), after=five_days, calendar=office
    )


@pytest.mark.parametrize(
    ("action", "error", "message"),
    [
        (lambda i: i.start(at=datetime(2025, 3, 3, 10), by="sam"), ValidationError, "naive"),
        (lambda i: i.start(at=T0 - MIN, by="sam"), ValidationError, "never goes backwards"),
        (lambda i: i.start(at=T0, by=""), ValidationError, "who acted"),
        (lambda i: i.hold(reason="awaiting godot", at=T0, by="s"), ValidationError, "hold reason"),
        (lambda i: i.resolve(code="", notes="x", at=T0, by="s"), ValidationError, "code"),
        (lambda i: i.resolve(code="duplicate", notes=" ", at=T0, by="s"), ValidationError, "notes"),
        (
            lambda i: i.resolve(code="fixed it", notes="x", at=T0, by="s"),
            ValidationError,
            "unknown resolution code 'fixed it'; this desk's workflow 'incident' allows",
        ),
        (lambda i: i.assign(group="", at=T0, by="s"), ValidationError, "group"),
        (
            lambda i: i.reprioritize(urgency="asap", reason="x", at=T0, by="s"),
            ValidationError,
            "Urgency",
        ),
    ],
)
def test_bad_input_is_a_typed_error_and_leaves_the_record_untouched(
    action: Callable[[Incident], Incident], error: type[Exception], message: str
) -> None:
    incident = opened()
    snapshot = Incident.replay(incident.history)
    with pytest.raises(error, match=message):
        action(incident)
    assert incident == snapshot


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("title", "  ", "title"),
        ("id", "", "id"),
        ("caller", None, "caller"),
        ("channel", "carrier pigeon", "channel"),
        ("impact", "5 - Apocalyptic", "Impact"),
        ("at", datetime(2025, 3, 3), "naive"),
    ],
)
def test_open_refuses_bad_fields(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        opened(**{field: value})


def test_replay_requires_an_opening_and_incident_events() -> None:
    with pytest.raises(ValidationError, match="starts with an opening"):
        Incident.replay([])
    stray = StateChanged(at=T0, by="x", state="new", trigger="t", source="new")
    with pytest.raises(ValidationError, match="starts with an opening"):
        Incident.replay([stray])


def test_a_vendor_workflow_adds_a_state_and_a_guard_without_subclassing() -> None:
    def has_assignee(record: Any, _context: Any) -> str | None:
        return None if record.assignee else "assign someone first"

    approvals = INCIDENT_WORKFLOW.derive(
        name="incident-with-approval",
        add_states=["awaiting_approval"],
        add_transitions=[
            Transition("request_approval", "in_progress", "awaiting_approval"),
            Transition("approve", "awaiting_approval", "in_progress"),
        ],
        add_guards={"resolve": has_assignee},
    )
    i = opened(workflow=approvals)
    i = i.start(at=T0, by="sam").fire("request_approval", at=T0, by="sam", approver="cab")
    assert i.state == "awaiting_approval"
    assert i.history[-1].data == (("approver", "cab"),)  # type: ignore[attr-defined]
    with pytest.raises(InvalidTransitionError) as err:
        i.resolve(code="duplicate", notes="x", at=T0, by="sam")
    assert err.value.allowed == ("approve",)
    i = i.fire("approve", at=T0, by="cab")
    with pytest.raises(InvalidTransitionError, match="assign someone first"):
        i.resolve(code="duplicate", notes="x", at=T0, by="sam")
    i = i.assign(group="g", assignee="sam", at=T0, by="desk")
    i = i.resolve(code="duplicate", notes="x", at=T0, by="sam")
    assert i.state is RESOLVED
    assert Incident.replay(i.history, workflow=approvals) == i
    with pytest.raises(InvalidTransitionError):
        opened().fire("approve", at=T0, by="cab")  # the default workflow has no such trigger


def test_custom_resolution_codes() -> None:
    wf = incident_workflow(resolution_codes={"fixed", "wontfix"})
    assert opened(workflow=wf).resolve(code="fixed", notes="ok", at=T0, by="s").state is RESOLVED
    with pytest.raises(ValidationError, match="allows: fixed, wontfix"):
        opened(workflow=wf).resolve(code="solution_provided", notes="ok", at=T0, by="s")


def test_timeline_shows_the_record_after_each_event() -> None:
    i = REACH[HOLD](REACH[WORK](opened())).resume(at=T0 + timedelta(hours=1), by="sam")
    steps = i.timeline()
    assert [e for e, _ in steps] == list(i.history)
    assert [r.state for _, r in steps] == [NEW, WORK, HOLD, WORK]
    assert [r.version for _, r in steps] == [1, 2, 3, 4]
    assert steps[2][1].hold_reason is HoldReason.AWAITING_VENDOR
    assert steps[-1][1] == i
    # The private walk lends one scratch record; what it shows at each step matches copies.
    seen: list[tuple[str, int]] = []
    i._walk(lambda _e, r: seen.append((r.state, r.version)))
    assert seen == [(r.state, r.version) for _, r in steps]
    # Every snapshot's history is its own tuple, the events up to it (not a shared view).
    assert all(type(r.history) is tuple for _, r in steps)
    assert [r.history for _, r in steps] == [i.history[: k + 1] for k in range(4)]


def test_a_walk_shows_the_history_so_far_without_copying_it() -> None:
    i = REACH[HOLD](REACH[WORK](opened())).resume(at=T0 + timedelta(hours=1), by="sam")
    views: list[tuple[Any, ...]] = []

    def look(_event: Any, r: Incident) -> None:
        h = r.history
        n = len(h)
        assert h == i.history[:n]
        assert tuple(h) == i.history[:n]
        assert hash(h) == hash(i.history[:n])
        assert h[-1] is i.history[n - 1]
        assert h[0] is i.history[0]
        assert h[1:] == i.history[1:n]
        with pytest.raises(IndexError):
            h[n]
        views.append((n, r.version, list(h)))

    i._walk(look)
    assert [(n, v) for n, v, _ in views] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    # An SLA condition reading the history sees the same prefix at each step.
    lengths: list[int] = []

    def stop(r: Any) -> bool:
        lengths.append(len(r.history))
        return bool(r.state == RESOLVED)

    d = SLADefinition(name="custom", targets=dict.fromkeys(Priority, None), stop=stop)
    d.evaluate(i, at=T0 + timedelta(hours=2))
    assert lengths == [1, 2, 3, 4]


def test_replay_accepts_any_iterable_and_refuses_time_travel() -> None:
    i = REACH[CLOSED](opened())
    assert Incident.replay(e for e in i.history) == i
    backwards = (i.history[0], IncidentStarted(at=T0 - MIN, by="sam", state="in_progress"))
    with pytest.raises(ValidationError, match="goes back in time"):
        Incident.replay(backwards)
