"""Change enablement: one lifecycle per type as a table, a state machine, approvals, risk.

The tables transcribe ../shared/domain/change.md: standard New → Scheduled → Implement →
Review → Closed; normal through Assess and Authorize; emergency through Authorize only;
canceled from any state before Review; a deciding rejection returns to New; rescheduling
once approval has begun starts approval again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from itsmcore import (
    Change,
    ChangeState,
    ChangeType,
    InvalidTransitionError,
    RiskLevel,
    SegregationOfDutiesError,
    ValidationError,
)
from itsmcore.change import (
    CHANGE_WORKFLOWS,
    ApprovalLevel,
    CloseCode,
    Decision,
    RiskModel,
    RiskRule,
    StandardChangeTemplate,
    change_measures,
)
from itsmcore.errors import DefinitionError
from itsmcore.repository import RecordKind
from itsmcore.testing import RecordKindContract
from test_storage import InMemory, Postgres, SQLite

T0 = datetime(2025, 12, 10, 9, tzinfo=UTC)
M, H = timedelta(minutes=1), timedelta(hours=1)
NEW, ASSESS, AUTH = ChangeState.NEW, ChangeState.ASSESS, ChangeState.AUTHORIZE
SCHED, IMPL, REVIEW = ChangeState.SCHEDULED, ChangeState.IMPLEMENT, ChangeState.REVIEW
CLOSED, CANCELED = ChangeState.CLOSED, ChangeState.CANCELED
TEMPLATE = StandardChangeTemplate(
    "restart-web", 3, "Restart the web tier", implementation_plan="rolling restart",
    backout_plan="none needed", duration=timedelta(minutes=30),
)  # fmt: skip
PLANS = {
    ChangeType.NORMAL: (
        ApprovalLevel.any_of("technical", ["tina"], stage="assess"),
        ApprovalLevel.any_of("cab", ["ann"]),
    ),
    ChangeType.EMERGENCY: (ApprovalLevel.any_of("ecab", ["ed"]),),
    ChangeType.STANDARD: (),
}


def opened(kind: ChangeType = ChangeType.NORMAL, **fields: Any) -> Change:
    if kind is ChangeType.STANDARD:
        return Change.from_template(
            TEMPLATE, id=fields.get("id", "CHG1"), requester="rita", at=T0, by="rita",
            cis=["web-01"], planned_start=T0 + 72 * H, implementer="ivan",
        )  # fmt: skip
    spec = {
        "id": "CHG1", "title": "Upgrade db-01 to 16.2", "requester": "rita", "at": T0,
        "by": "rita", "change_type": kind, "cis": ["db-01"], "implementer": "ivan",
        "backout_plan": "restore the snapshot", "approvals": PLANS[kind],
        "planned_start": T0 + 72 * H, "planned_end": T0 + 75 * H,
    } | fields  # fmt: skip
    return Change.open(**spec)


def later(c: Change) -> datetime:
    return c.updated_at + M


def approver(c: Change) -> str:
    """Someone the pending level waits for (or a CAB member, where nothing is pending)."""
    level = c.pending_level()
    voted = {v.approver for v in c.votes if v.round == c.approval_round}
    if level is None:
        return "ann"
    return next(a for a in level.approvers if a not in voted)


def _approve(c: Change) -> Change:
    return c.approve(comment="ok", at=later(c), by=approver(c))


def _approved(c: Change) -> Change:
    c = c.submit(at=later(c), by="rita")
    while c.state in (ASSESS, AUTH):
        c = _approve(c)
    return c


def _implementing(c: Change) -> Change:
    c = _approved(c)
    return c.implement(at=T0 + 72 * H + M, by="ivan")


def _reviewing(c: Change) -> Change:
    c = _implementing(c)
    return c.complete(code="successful", at=later(c), by="ivan")


def _closed(c: Change) -> Change:
    c = _reviewing(c)
    return c.close(outcome="as planned", at=later(c), by="rita")


def _authorizing(c: Change) -> Change:
    c = c.submit(at=later(c), by="rita")
    return c if c.state is AUTH else _approve(c)


REACH: dict[ChangeState, Callable[[Change], Change]] = {
    NEW: lambda c: c,
    ASSESS: lambda c: c.submit(at=later(c), by="rita"),
    AUTH: _authorizing,
    SCHED: _approved,
    IMPL: _implementing,
    REVIEW: _reviewing,
    CLOSED: _closed,
    CANCELED: lambda c: c.cancel(reason="not needed", at=later(c), by="rita"),
}
VERBS: dict[str, Callable[[Change], Change]] = {
    "submit": lambda c: c.submit(at=later(c), by="rita"),
    "approve": _approve,
    "reject": lambda c: c.reject(reason="too risky", at=later(c), by=approver(c)),
    "reschedule": lambda c: c.reschedule(planned_start=T0 + 96 * H, planned_end=T0 + 99 * H,
                                         reason="vendor late", at=later(c), by="rita"),
    "assess_risk": lambda c: c.assess_risk(model=RiskModel(), answers={}, at=later(c), by="rita"),
    "implement": lambda c: c.implement(at=later(c), by="ivan"),
    "complete": lambda c: c.complete(code="successful", at=later(c), by="ivan"),
    "close": lambda c: c.close(outcome="fine", at=later(c), by="rita"),
    "cancel": lambda c: c.cancel(reason="not needed", at=later(c), by="rita"),
    "assign": lambda c: c.assign(group="dba", at=later(c), by="rita"),
    "comment": lambda c: c.comment(text="noted", at=later(c), by="rita"),
    "update": lambda c: c.update(test_plan="smoke tests", at=later(c), by="rita"),
}  # fmt: skip
_ = None


def _table(kind: ChangeType) -> dict[ChangeState, dict[str, ChangeState | None]]:
    """The documented outcome of every verb in every state of one type's lifecycle."""
    approval = {ChangeType.NORMAL: [ASSESS, AUTH], ChangeType.EMERGENCY: [AUTH]}.get(kind, [])
    first = approval[0] if approval else SCHED
    table: dict[ChangeState, dict[str, ChangeState | None]] = {}
    for state in [NEW, *approval, SCHED, IMPL, REVIEW, CLOSED, CANCELED]:
        row: dict[str, ChangeState | None] = dict.fromkeys(VERBS)
        if state not in (REVIEW, CLOSED, CANCELED):
            row["cancel"] = CANCELED
            row["reprioritize"] = state
        if state not in (CLOSED, CANCELED):
            row |= {"assign": state, "comment": state}
        if state in (NEW, *approval, SCHED):
            row["update"] = state
        if state in (NEW, *approval):
            row["assess_risk"] = state
        if state is NEW:
            row |= {"submit": first, "reschedule": NEW}
        if state in approval:
            following = ([*approval, SCHED])[approval.index(state) + 1]
            row |= {"approve": following, "reject": NEW, "reschedule": first}
        if state is SCHED:
            row |= {"implement": IMPL, "reschedule": first if approval else SCHED}
        if state is IMPL:
            row["complete"] = REVIEW
        if state is REVIEW:
            row["close"] = CLOSED
        row.pop("reprioritize", None)
        table[state] = row
    return table


EXPECTED = {kind: _table(kind) for kind in ChangeType}
CASES = [(kind, state, v) for kind in ChangeType for state in EXPECTED[kind] for v in VERBS]


@pytest.mark.parametrize(("kind", "state", "verb"), CASES, ids=str)
def test_every_state_and_verb_of_every_type_behaves_as_documented(
    kind: ChangeType, state: ChangeState, verb: str
) -> None:
    before = REACH[state](opened(kind))
    assert before.state is state
    expected = EXPECTED[kind][state][verb]
    if expected is None:
        with pytest.raises(InvalidTransitionError) as err:
            VERBS[verb](before)
        assert (err.value.trigger, err.value.state) == (verb, state)
        return
    after = VERBS[verb](before)
    assert after.state is expected
    assert after.version == before.version + 1
    assert Change.replay(after.history) == after


def test_the_three_lifecycles_follow_their_types() -> None:
    paths = {
        kind: [s for s in (NEW, ASSESS, AUTH, SCHED) if s in CHANGE_WORKFLOWS[kind].states]
        for kind in ChangeType
    }
    assert paths == {
        ChangeType.STANDARD: [NEW, SCHED],
        ChangeType.NORMAL: [NEW, ASSESS, AUTH, SCHED],
        ChangeType.EMERGENCY: [NEW, AUTH, SCHED],
    }
    for kind in ChangeType:
        c = _closed(opened(kind))
        assert (c.state, c.change_type, c.workflow.name) == (CLOSED, kind, f"change_{kind}")
        assert REVIEW in {e.state for e in c.history}  # review is never skipped


def test_a_standard_change_keeps_its_template_and_version() -> None:
    c = opened(ChangeType.STANDARD)
    assert (c.template, c.template_version, c.risk) == ("restart-web", 3, RiskLevel.LOW)
    assert c.planned_end == T0 + 72 * H + timedelta(minutes=30)
    assert c.implementation_plan == "rolling restart"
    assert c.submit(at=later(c), by="rita").state is SCHED
    with pytest.raises(ValidationError, match="from_template"):
        Change.open(id="C2", title="x", requester="r", at=T0, by="r", change_type="standard")


def test_submitting_needs_a_window_a_backout_plan_and_the_approvals_it_must_pass() -> None:
    bare = Change.open(id="C9", title="Patch", requester="rita", at=T0, by="rita")
    with pytest.raises(ValidationError) as err:
        bare.submit(at=T0, by="rita")
    message = str(err.value)
    for missing in ("planned window", "back-out plan", "approval level for assess",
                    "approval level for authorize"):  # fmt: skip
        assert missing in message


def test_n_of_m_approves_at_n_and_a_required_rejection_ends_the_round() -> None:
    cab = ApprovalLevel("cab", ("ann", "bob", "cid"), required=2)
    c = opened(approvals=(ApprovalLevel.any_of("technical", ["tina"], stage="assess"), cab))
    c = _approve(c.submit(at=later(c), by="rita"))
    assert c.state is AUTH
    c = c.approve(at=later(c), by="ann")
    c = c.reject(reason="no rollback test", at=later(c), by="bob")
    assert c.state is AUTH  # 2 of 3 can still be reached
    c = c.approve(at=later(c), by="cid")
    assert c.state is SCHED
    assert [(v.approver, v.decision) for v in c.votes][-3:] == [
        ("ann", Decision.APPROVE), ("bob", Decision.REJECT), ("cid", Decision.APPROVE),
    ]  # fmt: skip
    unanimous = ApprovalLevel.all_of("cab", ["ann", "bob"])
    d = opened(approvals=(PLANS[ChangeType.NORMAL][0], unanimous))
    d = _approve(d.submit(at=later(d), by="rita"))
    d = d.approve(at=later(d), by="ann").reject(reason="freeze", at=later(d) + M, by="bob")
    assert (d.state, d.rejection_reason) == (NEW, "freeze")  # one required rejection ends it
    d = d.submit(at=later(d), by="rita")  # a new round after rework: earlier votes do not count
    assert (d.state, d.approval_round, d.pending_level().name) == (ASSESS, 2, "technical")  # type: ignore[union-attr]


def test_levels_of_one_state_run_in_sequence() -> None:
    plan = (
        ApprovalLevel.any_of("technical", ["tina"], stage="assess"),
        ApprovalLevel.any_of("security", ["sam"]),
        ApprovalLevel.any_of("cab", ["ann"]),
    )
    c = opened(approvals=plan)
    c = _approve(c.submit(at=later(c), by="rita"))
    with pytest.raises(ValidationError, match="not an approver of level 'security'"):
        c.approve(at=later(c), by="ann")
    c = c.approve(at=later(c), by="sam")
    assert (c.state, c.pending_level().name) == (AUTH, "cab")  # type: ignore[union-attr]
    assert c.approve(at=later(c), by="ann").state is SCHED


@pytest.mark.parametrize("role", ["requester", "assignee", "implementer"])
def test_no_one_approves_their_own_change_not_even_through_fire(role: str) -> None:
    cab = ApprovalLevel.any_of("cab", ["ann", "bob"])
    c = opened(approvals=(PLANS[ChangeType.NORMAL][0], cab), requester="rita")
    c = _approve(c.submit(at=later(c), by="rita"))
    person = {"requester": "ann", "implementer": "ann", "assignee": "ann"}[role]
    c = (
        opened(approvals=(PLANS[ChangeType.NORMAL][0], cab), requester=person)
        if role == "requester"
        else opened(approvals=(PLANS[ChangeType.NORMAL][0], cab), implementer=person)
        if role == "implementer"
        else c.assign(group="dba", assignee=person, at=later(c), by="rita")
    )
    if c.state is NEW:
        c = _approve(c.submit(at=later(c), by="rita"))
    for attempt in (
        lambda: c.approve(at=later(c), by="ann"),
        lambda: c.reject(reason="mine", at=later(c), by="ann"),
        lambda: c.fire("approve", at=later(c), by="ann"),
        lambda: c.fire("vote", decision="approve", at=later(c), by="ann"),
    ):
        with pytest.raises(SegregationOfDutiesError, match=f"ann is the {role}"):
            attempt()
    assert c.approve(at=later(c), by="bob").state is SCHED


def test_each_approver_votes_once_per_round() -> None:
    cab = ApprovalLevel("cab", ("ann", "bob", "cid"), required=2)
    c = opened(approvals=(PLANS[ChangeType.NORMAL][0], cab))
    c = _approve(c.submit(at=later(c), by="rita")).approve(at=later(c) + H, by="ann")
    with pytest.raises(ValidationError, match="already voted"):
        c.approve(at=later(c), by="ann")


def test_moving_an_approved_schedule_sends_it_back_for_approval() -> None:
    for kind, back in ((ChangeType.NORMAL, ASSESS), (ChangeType.EMERGENCY, AUTH),
                       (ChangeType.STANDARD, SCHED)):  # fmt: skip
        c = _approved(opened(kind))
        moved = c.reschedule(planned_start=T0 + 96 * H, planned_end=T0 + 97 * H,
                             reason="vendor", at=later(c), by="rita")  # fmt: skip
        assert (moved.state, moved.planned_start) == (back, T0 + 96 * H)
        assert moved.approved is (kind is ChangeType.STANDARD)


def test_working_outside_the_planned_window_is_recorded() -> None:
    c = _approved(opened())
    early = c.implement(at=T0 + 70 * H, by="ivan")
    assert early.started_outside_window
    done = early.complete(code="successful", at=T0 + 74 * H, by="ivan")
    assert not done.ended_outside_window
    on_time = c.implement(at=T0 + 72 * H, by="ivan").complete(
        code="successful_with_issues", at=T0 + 76 * H, by="ivan")  # fmt: skip
    assert (on_time.started_outside_window, on_time.ended_outside_window) == (False, True)
    assert (on_time.actual_start, on_time.actual_end) == (T0 + 72 * H, T0 + 76 * H)


def test_failed_changes_say_what_happened_and_link_the_incidents_they_caused() -> None:
    c = _implementing(opened())
    with pytest.raises(ValidationError, match="needs notes"):
        c.complete(code="backed_out", at=later(c), by="ivan")
    c = c.complete(code="backed_out", notes="replication broke", at=later(c), by="ivan")
    with pytest.raises(ValidationError, match="needs lessons"):
        c.close(outcome="backed out", at=later(c), by="rita")
    c = c.close(outcome="backed out after 20 min", lessons="test replication first",
                caused=["INC0000101", "INC0000102"], at=later(c), by="rita")  # fmt: skip
    assert (c.state, c.close_code) == (CLOSED, CloseCode.BACKED_OUT)
    assert c.incidents == ("INC0000101", "INC0000102")


def test_risk_comes_from_the_questionnaire_or_a_rule_and_says_which() -> None:
    model = RiskModel(
        questions={"users affected": {"none": 0, "some": 2, "all": 5},
                   "tested before": {"yes": 0, "no": 2}},
        thresholds=((0, RiskLevel.LOW), (3, RiskLevel.MODERATE), (6, RiskLevel.HIGH)),
        rules=(
            RiskRule("no tested back-out plan", "high", lambda c: not c.backout_tested),
            RiskRule("touches a critical CI", "very_high", lambda c: "core-db" in c.cis),
        ),
    )  # fmt: skip
    c = opened(backout_tested=True)
    some = c.assess_risk(model=model, answers={"users affected": "some", "tested before": "no"},
                         at=later(c), by="rita")  # fmt: skip
    assert (some.risk, some.risk_score, some.risk_reason) == (RiskLevel.MODERATE, 4.0, "score 4")
    untested = opened().assess_risk(
        model=model, answers={"users affected": "none", "tested before": "yes"}, at=T0, by="r"
    )
    assert (untested.risk, untested.risk_reason) == (
        RiskLevel.HIGH,
        "rule: no tested back-out plan",
    )
    critical = opened(cis=["core-db"], backout_tested=True).assess_risk(
        model=model, answers={"users affected": "all", "tested before": "no"}, at=T0, by="r"
    )
    assert (critical.risk, critical.risk_reason) == (
        RiskLevel.VERY_HIGH,
        "rule: touches a critical CI",
    )
    with pytest.raises(ValidationError, match="missing tested before"):
        c.assess_risk(model=model, answers={"users affected": "all"}, at=T0, by="r")
    with pytest.raises(ValidationError, match="answer one of none, some, all"):
        c.assess_risk(model=model, answers={"users affected": "most", "tested before": "no"},
                      at=T0, by="r")  # fmt: skip


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ApprovalLevel("cab", ("ann",), 2), "required must be 1 to 1"),
        (lambda: ApprovalLevel("cab", ("ann", "ann")), "distinct"),
        (lambda: ApprovalLevel("cab", "ann"), "collection"),
        (lambda: ApprovalLevel("cab", ("ann",), stage="scheduled"), "assess or authorize"),
        (lambda: RiskModel(thresholds=((5, "high"), (1, "low"))), "rising order"),
        (lambda: StandardChangeTemplate("t", 0, "x"), "version"),
    ],
)
def test_broken_definitions_fail_when_built(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()


def test_bad_requests_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="not after planned_start"):
        opened(planned_end=T0 + 71 * H)
    with pytest.raises(ValidationError, match="both planned_start and planned_end"):
        opened(planned_end=None)
    with pytest.raises(ValidationError, match="no assess state"):
        opened(ChangeType.EMERGENCY, approvals=PLANS[ChangeType.NORMAL])
    with pytest.raises(ValidationError, match="naive"):
        opened(planned_start=datetime(2025, 12, 13, 22))  # naive: the bad input
    with pytest.raises(ValidationError, match="unknown change type"):
        opened(change_type="urgent")


# --------------------------------------------------------------------------- state machine


class ChangeMachine(RuleBasedStateMachine):
    """Random verbs on a change of a random type: the table holds, replay rebuilds it."""

    change: Change

    @initialize(kind=st.sampled_from(list(ChangeType)))
    def start(self, kind: ChangeType) -> None:
        self.change = opened(kind)

    @rule(verb=st.sampled_from(sorted(VERBS)))
    def act(self, verb: str) -> None:
        before = self.change
        expected = EXPECTED[before.change_type][before.state][verb]
        try:
            after = VERBS[verb](before)
        except InvalidTransitionError:
            assert expected is None
            return
        assert after.state is expected
        self.change = after

    @precondition(lambda self: self.change.state in (ASSESS, AUTH))
    @rule(who=st.sampled_from(["rita", "ivan"]))
    def own_vote_is_refused(self, who: str) -> None:
        with pytest.raises(SegregationOfDutiesError):
            self.change.approve(at=later(self.change), by=who)

    @invariant()
    def replay_rebuilds_it(self) -> None:
        assert Change.replay(self.change.history) == self.change

    @invariant()
    def approved_means_past_every_approval(self) -> None:
        c = self.change
        assert c.approved == (c.state in (SCHED, IMPL, REVIEW, CLOSED))


TestChangeMachine = ChangeMachine.TestCase


# --------------------------------------------------------------------------- storage

CHANGES: RecordKind[Change] = RecordKind("changes", Change)


@st.composite
def _histories(draw: st.DrawFn) -> Change:
    c = opened(draw(st.sampled_from(list(ChangeType))))
    for verb in draw(st.lists(st.sampled_from(sorted(VERBS)), max_size=12)):
        try:
            c = VERBS[verb](c)
        except InvalidTransitionError:
            continue
    return c


class _Changes(RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = CHANGES

    def records(self) -> st.SearchStrategy[Any]:
        return _histories()


class TestChangesInMemory(InMemory, _Changes):
    pass


class TestChangesInSQLite(SQLite, _Changes):
    pass


class TestChangesInPostgres(Postgres, _Changes):
    pass


def test_changes_are_found_by_type_risk_and_planned_window(tmp_path: Any) -> None:
    from itsmcore.storage import SQLiteStore  # noqa: PLC0415 - beside its use

    store = SQLiteStore(tmp_path / "desk.db")
    model = RiskModel(rules=(RiskRule("untested back-out", "high", lambda _c: True),))
    with store.unit_of_work() as uow:
        for n, kind in enumerate(ChangeType):
            c = opened(kind, id=uow.changes.new_id())
            if kind is ChangeType.NORMAL:
                c = c.assess_risk(model=model, answers={}, at=later(c), by="rita")
            uow.changes.add(_approved(c) if n else c)
        uow.commit()
    with store.unit_of_work() as uow:
        assert [c.id for c in uow.changes.find(change_type="standard")] == ["CHG0000001"]
        assert [c.id for c in uow.changes.find(risk="high")] == ["CHG0000002"]
        assert [c.id for c in uow.changes.find(state="scheduled")] == ["CHG0000002", "CHG0000003"]
        window = uow.changes.find(planned_from=T0 + 71 * H, planned_until=T0 + 73 * H)
        assert len(window) == 3


def test_the_measures_over_a_set_of_changes() -> None:
    good = _closed(opened(ChangeType.NORMAL))
    quick = _closed(opened(ChangeType.STANDARD, id="CHG2"))
    c = _implementing(opened(ChangeType.EMERGENCY, id="CHG3"))
    c = c.complete(code="unsuccessful", notes="disk full", at=later(c), by="ivan")
    bad = c.close(outcome="failed", lessons="check space", caused=["INC1", "INC2"],
                  at=later(c), by="rita")  # fmt: skip
    pending = opened(ChangeType.NORMAL, id="CHG4")
    m = change_measures([good, quick, bad, pending])
    assert (m.changes, m.closed, m.caused_incidents, m.incidents_caused) == (4, 3, 1, 2)
    assert m.success_rate == pytest.approx(2 / 3)
    assert m.emergency_ratio == 0.25
    # Requested at T0, implemented at T0 + 72 h + 1 min (standard: its own start later).
    leads = [x.actual_start - x.opened_at for x in (good, quick, bad)]  # type: ignore[operator]
    assert m.mean_lead_time == sum(leads, timedelta(0)) / 3
    approval = [2 * M, M]  # normal: two levels a minute apart; emergency: one
    assert m.mean_approval_time == sum(approval, timedelta(0)) / 2
    empty = change_measures([])
    assert (empty.success_rate, empty.emergency_ratio, empty.mean_lead_time) == (None, None, None)
