"""Problem management: the documented lifecycle as a table, a state machine, known errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from itsmcore import Incident, InvalidTransitionError, Problem, ProblemState, ValidationError
from itsmcore.problem import (
    PROBLEM_WORKFLOW,
    CauseCategory,
    ProblemResolution,
    Technique,
    communicate_workaround,
    find_known_errors,
    incident_cost,
    link_incidents,
)
from itsmcore.repository import RecordKind
from itsmcore.testing import RecordKindContract
from test_storage import InMemory, Postgres, SQLite

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
M = timedelta(minutes=1)
NEW, ASSESS = ProblemState.NEW, ProblemState.ASSESS
RCA, FIX = ProblemState.ROOT_CAUSE_ANALYSIS, ProblemState.FIX_IN_PROGRESS
RESOLVED, CLOSED, CANCELED = ProblemState.RESOLVED, ProblemState.CLOSED, ProblemState.CANCELED


def opened(**fields: Any) -> Problem:
    spec = {
        "id": "PRB1",
        "title": "Payroll app hangs weekly",
        "impact": 2,
        "urgency": 2,
        "at": T0,
        "by": "pm",
        "ci": "payroll-app",
        "symptom": "payroll export hangs",
    }
    return Problem.open(**(spec | fields))  # fmt: skip


def later(p: Problem) -> datetime:
    return p.updated_at + M


def to_fix(p: Problem) -> Problem:
    p = p.assess(at=later(p), by="pm")
    p = p.confirm(at=later(p), by="pm")
    return p.fix(root_cause="connection pool leak", at=later(p), by="dev")


def resolved(p: Problem) -> Problem:
    p = to_fix(p)
    return p.resolve(fix="pool size capped", at=later(p), by="dev")


def rca(p: Problem) -> Problem:
    p = p.assess(at=later(p), by="pm")
    return p.confirm(at=later(p), by="pm")


REACH: dict[ProblemState, Callable[[Problem], Problem]] = {
    NEW: lambda p: p,
    ASSESS: lambda p: p.assess(at=later(p), by="pm"),
    RCA: rca,
    FIX: to_fix,
    RESOLVED: resolved,
    CLOSED: lambda p: resolved(p).complete(at=later(resolved(p)), by="pm"),
    CANCELED: lambda p: p.cancel(reason="not a problem", at=later(p), by="pm"),
}
VERBS: dict[str, Callable[[Problem], Problem]] = {
    "assess": lambda p: p.assess(at=later(p), by="pm"),
    "confirm": lambda p: p.confirm(at=later(p), by="pm"),
    "fix": lambda p: p.fix(root_cause="a leak", at=later(p), by="dev"),
    "resolve": lambda p: p.resolve(change="CHG1", at=later(p), by="dev"),
    "complete": lambda p: p.complete(at=later(p), by="pm"),
    "reanalyze": lambda p: p.reanalyze(reason="it came back", at=later(p), by="pm"),
    "accept_risk": lambda p: p.accept_risk(reason="too costly", at=later(p), by="pm"),
    "cancel": lambda p: p.cancel(reason="dup", at=later(p), by="pm"),
    "mark_duplicate": lambda p: p.mark_duplicate(of="PRB0", at=later(p), by="pm"),
    "analyze": lambda p: p.analyze(technique="five_whys", findings="why x5", at=later(p), by="d"),
    "record_workaround": lambda p: p.record_workaround(workaround="restart", at=later(p), by="d"),
    "assign": lambda p: p.assign(group="payroll", at=later(p), by="pm"),
    "comment": lambda p: p.comment(text="noted", at=later(p), by="pm"),
}
_ = None
# From ../shared/domain/problem.md: assess, confirm, fix, resolve, complete; re-analyse from
# Fix in Progress or Resolved; accept risk from RCA or Fix; cancel or mark duplicate before
# Resolved. Closed and Canceled are final. Actions keep the state.
EXPECTED: dict[ProblemState, dict[str, ProblemState | None]] = {
    NEW: {"assess": ASSESS, "confirm": _, "fix": _, "resolve": _, "complete": _,
          "reanalyze": _, "accept_risk": _, "cancel": CANCELED, "mark_duplicate": CLOSED,
          "analyze": _, "record_workaround": _, "assign": NEW, "comment": NEW},
    ASSESS: {"assess": _, "confirm": RCA, "fix": _, "resolve": _, "complete": _,
             "reanalyze": _, "accept_risk": _, "cancel": CANCELED, "mark_duplicate": CLOSED,
             "analyze": ASSESS, "record_workaround": ASSESS, "assign": ASSESS,
             "comment": ASSESS},
    RCA: {"assess": _, "confirm": _, "fix": FIX, "resolve": _, "complete": _,
          "reanalyze": _, "accept_risk": CLOSED, "cancel": CANCELED, "mark_duplicate": CLOSED,
          "analyze": RCA, "record_workaround": RCA, "assign": RCA, "comment": RCA},
    FIX: {"assess": _, "confirm": _, "fix": _, "resolve": RESOLVED, "complete": _,
          "reanalyze": RCA, "accept_risk": CLOSED, "cancel": CANCELED, "mark_duplicate": CLOSED,
          "analyze": FIX, "record_workaround": FIX, "assign": FIX, "comment": FIX},
    RESOLVED: {"assess": _, "confirm": _, "fix": _, "resolve": _, "complete": CLOSED,
               "reanalyze": RCA, "accept_risk": _, "cancel": _, "mark_duplicate": _,
               "analyze": _, "record_workaround": RESOLVED, "assign": RESOLVED,
               "comment": RESOLVED},
    CLOSED: dict.fromkeys(VERBS),
    CANCELED: dict.fromkeys(VERBS),
}  # fmt: skip


@pytest.mark.parametrize("state", list(EXPECTED), ids=str)
@pytest.mark.parametrize("verb", list(VERBS))
def test_every_state_and_verb_behaves_as_documented(state: ProblemState, verb: str) -> None:
    before = REACH[state](opened())
    assert before.state is state
    expected = EXPECTED[state][verb]
    if expected is None:
        with pytest.raises(InvalidTransitionError) as err:
            VERBS[verb](before)
        assert (err.value.trigger, err.value.state) == (verb, state)
    else:
        after = VERBS[verb](before)
        assert after.state is expected
        assert after.history[:-1] == before.history
        assert Problem.replay(after.history) == after


def test_how_a_problem_ends_is_recorded() -> None:
    closed = REACH[CLOSED](opened())
    assert (closed.resolution, closed.fix_description) == (
        ProblemResolution.FIX_APPLIED, "pool size capped",
    )  # fmt: skip
    analysed = REACH[RCA](opened())
    risky = analysed.accept_risk(reason="costs more", at=later(analysed), by="x")
    assert (risky.resolution, risky.resolution_reason) == (
        ProblemResolution.RISK_ACCEPTED, "costs more",
    )  # fmt: skip
    dup = opened().mark_duplicate(of="PRB9", at=T0, by="pm")
    assert (dup.resolution, dup.duplicate_of, dup.state) == (
        ProblemResolution.DUPLICATE,
        "PRB9",
        CLOSED,
    )
    gone = opened().cancel(reason="user error", at=T0, by="pm")
    assert (gone.resolution, gone.state) == (ProblemResolution.CANCELED, CANCELED)
    again = REACH[RESOLVED](opened()).reanalyze(reason="it came back", at=T0 + M * 60, by="pm")
    assert (again.state, again.fix_description, again.reanalysis_count) == (RCA, None, 1)
    with pytest.raises(ValidationError, match="duplicate itself"):
        opened().mark_duplicate(of="PRB1", at=T0, by="pm")


def test_resolving_as_fixed_says_what_is_missing() -> None:
    fixing = to_fix(opened())
    with pytest.raises(ValidationError, match=r"a fix description .* or a linked change"):
        fixing.resolve(at=later(fixing), by="dev")
    assert fixing.resolve(change="CHG7", at=later(fixing), by="dev").changes == ("CHG7",)
    linked = fixing.link(kind="change", target="CHG8", at=later(fixing), by="dev")
    assert linked.resolve(at=later(linked), by="dev").state is RESOLVED
    rca = REACH[RCA](opened())
    with pytest.raises(ValidationError, match="a fix needs its root cause"):
        rca.fix(at=later(rca), by="dev")


def test_root_cause_analysis_is_data() -> None:
    p = REACH[RCA](opened())
    p = p.analyze(
        technique="Ishikawa", findings="pool never shrinks after the nightly batch",
        categories=["technology", "process"], contributing_factors=["no alert on pool size"],
        at=later(p), by="dev",
    )  # fmt: skip
    p = p.analyze(
        technique=Technique.FIVE_WHYS, findings="why 1..5", root_cause="connection leak",
        root_cause_ci="payroll-db", at=later(p), by="dev",
    )  # fmt: skip
    assert [a.technique for a in p.analyses] == [Technique.ISHIKAWA, Technique.FIVE_WHYS]
    assert p.analyses[0].categories == (CauseCategory.TECHNOLOGY, CauseCategory.PROCESS)
    assert (p.root_cause, p.root_cause_ci, p.known_error) == ("connection leak", "payroll-db", True)
    p = p.fix(at=later(p), by="dev")  # the root cause recorded by the analysis
    assert p.root_cause == "connection leak"
    with pytest.raises(ValidationError, match="unknown technique"):
        p.analyze(technique="guessing", findings="x", at=later(p), by="d")


def test_known_errors_are_looked_up_by_ci_service_and_symptom_words() -> None:
    a = REACH[RCA](opened(id="PRB1", service="payroll"))
    a = a.record_workaround(workaround="restart the export service", at=later(a), by="d")
    b = to_fix(opened(id="PRB2", title="VPN drops", ci="vpn-gw", symptom="VPN disconnects"))
    c = opened(id="PRB3", title="Printer jams", ci="printer-7")  # nothing known yet
    fixed = REACH[RESOLVED](opened(id="PRB4"))  # fixed: no longer a known error
    everything = [a, b, c, fixed]
    assert [e.problem for e in find_known_errors(everything)] == ["PRB1", "PRB2"]
    assert [e.problem for e in find_known_errors(everything, ci="vpn-gw")] == ["PRB2"]
    assert [e.problem for e in find_known_errors(everything, service="payroll")] == ["PRB1"]
    hits = find_known_errors(everything, symptom="the Payroll EXPORT hangs again")
    assert [e.problem for e in hits] == ["PRB1"]
    assert hits[0].workaround == "restart the export service"
    assert a.as_known_error() is not None
    assert c.as_known_error() is None


def test_linked_incidents_get_the_workaround_and_count_with_their_cost() -> None:
    incidents = [
        Incident.open(id=f"INC{k}", title="Export hangs", caller="payroll", impact=2,
                      urgency=2, at=T0, by="desk")
        for k in range(3)
    ]  # fmt: skip
    incidents[2] = incidents[2].resolve(code="solution_provided", notes="restarted", at=T0, by="s")
    p, linked = link_incidents(opened(), incidents[:3], at=T0 + M, by="pm")
    assert p.incidents == ("INC0", "INC1", "INC2")
    assert all(i.problems == ("PRB1",) for i in linked)
    p2, again = link_incidents(p, linked, at=T0 + M, by="pm")  # linking twice changes nothing
    assert (p2, again) == (p, linked)
    p = REACH[ASSESS](p).record_workaround(workaround="restart the service", at=T0 + 9 * M, by="d")
    stranger = Incident.open(id="INC9", title="x", caller="c", impact=3, urgency=3, at=T0, by="d")
    told = communicate_workaround(p, [*linked, stranger], at=T0 + 10 * M, by="pm")
    notes = [i.history[-1].type for i in told]
    assert notes == [
        "incident.commented",
        "incident.commented",
        "incident.linked",
        "incident.opened",
    ]
    assert "restart the service" in told[0].history[-1].text  # type: ignore[attr-defined]
    assert incident_cost(p, [*linked, stranger], lambda _i: 120.0) == (3, 360.0)
    with pytest.raises(ValidationError, match="no workaround"):
        communicate_workaround(opened(), linked, at=T0 + M, by="pm")


def test_a_closed_incident_is_recorded_on_the_problem_and_left_read_only() -> None:
    closed = (
        Incident.open(id="INC1", title="Export hangs", caller="payroll", impact=2, urgency=2,
                      at=T0, by="desk")
        .resolve(code="solution_provided", notes="restarted", at=T0 + M, by="desk")
        .close(at=T0 + 2 * M, by="desk")
    )  # fmt: skip
    p, (same,) = link_incidents(opened(), [closed], at=T0 + 3 * M, by="pm")
    assert p.incidents == ("INC1",)
    assert same is closed  # closed is read-only: no link event on it
    assert incident_cost(p, [same], lambda _i: 95.0) == (1, 95.0)


class ProblemMachine(RuleBasedStateMachine):
    """Random verb sequences: allowed moves succeed, refused ones leave the problem as it was."""

    problem: Problem

    @initialize()
    def start(self) -> None:
        self.problem = opened()

    def attempt(self, verb: str, step: int) -> None:
        before = self.problem
        expected = EXPECTED[before.state][verb]
        try:
            after = VERBS[verb](before) if step >= 0 else _backwards(before, verb)
        except (InvalidTransitionError, ValidationError):
            assert expected is None or step < 0 or (verb == "resolve" and before.root_cause is None)
            assert self.problem == before
            return
        assert expected is not None
        assert step >= 0
        assert after.state is expected
        self.problem = after

    @rule(verb=st.sampled_from(sorted(VERBS)), step=st.integers(-1, 3))
    def act(self, verb: str, step: int) -> None:
        self.attempt(verb, step)

    @invariant()
    def replay_rebuilds_it(self) -> None:
        assert Problem.replay(self.problem.history) == self.problem

    @invariant()
    def known_error_follows_its_definition(self) -> None:
        p = self.problem
        open_ = p.state not in (RESOLVED, CLOSED, CANCELED)
        assert p.known_error == (open_ and (p.root_cause is not None or p.workaround is not None))


def _backwards(p: Problem, verb: str) -> Problem:
    return p.comment(text=verb, at=p.updated_at - M, by="x")  # time never goes back


TestProblemMachine = ProblemMachine.TestCase

PROBLEMS: RecordKind[Problem] = RecordKind("problems", Problem)


class TestProblemsInMemory(InMemory, RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = PROBLEMS


class TestProblemsInSQLite(SQLite, RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = PROBLEMS


class TestProblemsInPostgres(Postgres, RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = PROBLEMS


def test_problems_are_found_by_their_own_columns(tmp_path: Path) -> None:
    from itsmcore.storage import SQLiteStore  # noqa: PLC0415

    store = SQLiteStore(tmp_path / "p.db")
    known = REACH[FIX](opened(id="PRB1"))
    plain = opened(id="PRB2", ci="mail")
    with store.unit_of_work() as uow:
        uow.problems.add(known)
        uow.problems.add(plain)
        uow.commit()
    with store.unit_of_work() as uow:
        assert [p.id for p in uow.problems.find(known_error=True)] == ["PRB1"]
        assert [p.id for p in uow.problems.find(state="fix_in_progress")] == ["PRB1"]
        assert [p.id for p in uow.problems.find(ci="mail")] == ["PRB2"]
        assert uow.problems.new_id() == "PRB0000001"


def test_the_default_workflow_is_the_documented_one() -> None:
    assert PROBLEM_WORKFLOW.triggers(FIX) == (
        "accept_risk", "analyze", "assign", "cancel", "comment", "link", "mark_duplicate",
        "reanalyze", "record_workaround", "reprioritize", "resolve", "unlink", "update",
    )  # fmt: skip
