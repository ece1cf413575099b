"""A hypothesis state machine drives incidents through random verb sequences.

Every verb is a rule, drawn with valid and invalid arguments and with times that sometimes
go backwards. The documented (state, verb) table from test_incident is the model: a verb the
table allows must succeed with valid arguments, anything else must raise a typed error and
leave the record as it was. Invariants hold after every step.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from itsmcore import Incident, InvalidTransitionError, ValidationError
from itsmcore.incident import INCIDENT_WORKFLOW, IncidentState
from test_incident import EXPECTED, T0

steps = st.integers(min_value=-5, max_value=180).map(lambda m: timedelta(minutes=m))
people = st.sampled_from(["sam", "kim", "lee", "desk"])
groups = st.sampled_from(["l1", "l2", "network", ""])  # "" is invalid
texts = st.sampled_from(["restarted the service", "see KB42", "", "   "])  # blanks are invalid
codes = st.sampled_from(["solution_provided", "duplicate", "user_error", "made it up", ""])
hold_reasons = st.sampled_from(
    ["awaiting_caller", "awaiting_vendor", "awaiting change", "Awaiting Problem", "coffee"]
)
levels = st.sampled_from([1, 2, 3, "2 - Medium", "high", "urgent", 7])

VALID_GROUPS = {"l1", "l2", "network"}
VALID_TEXT = {"restarted the service", "see KB42"}
VALID_CODES = {"solution_provided", "duplicate", "user_error"}
VALID_HOLD = {"awaiting_caller", "awaiting_vendor", "awaiting change", "Awaiting Problem"}
VALID_LEVELS = {1, 2, 3, "2 - Medium", "high"}


class IncidentMachine(RuleBasedStateMachine):
    incident: Incident

    @initialize(impact=st.sampled_from([1, 2, 3]), urgency=st.sampled_from([1, 2, 3]))
    def open_incident(self, impact: int, urgency: int) -> None:
        self.incident = Incident.open(
            id="INC1",
            title="Printer on fire",
            caller="mia",
            impact=impact,
            urgency=urgency,
            at=T0,
            by="desk",
        )

    def attempt(
        self, verb: str, step: timedelta, call: Callable[..., Incident], *, valid: bool = True
    ) -> None:
        """Apply ``call``; it must succeed exactly when the model says it may."""
        before = self.incident
        at = before.updated_at + step
        expected = EXPECTED[before.state][verb]
        should_work = expected is not None and valid and step >= timedelta(0)
        error: Exception | None = None
        try:
            after = call(before, at)
        except (InvalidTransitionError, ValidationError) as err:
            error = err
        if error is not None:
            assert not should_work, f"{verb} from {before.state} refused: {error}"
            assert self.incident == before
            if isinstance(error, InvalidTransitionError):
                assert error.state == before.state
                assert error.allowed == INCIDENT_WORKFLOW.allowed(before)
            return
        assert should_work, f"{verb} from {before.state} with bad input was accepted"
        assert after.state == expected or (
            verb == "comment" and after.state is IncidentState.IN_PROGRESS
        )
        assert after.history[: before.version] == before.history
        self.incident = after

    @rule(step=steps, by=people)
    def start(self, step: timedelta, by: str) -> None:
        self.attempt("start", step, lambda i, at: i.start(at=at, by=by))

    @rule(step=steps, reason=hold_reasons)
    def hold(self, step: timedelta, reason: str) -> None:
        ok = reason in VALID_HOLD
        self.attempt(
            "hold", step, valid=ok, call=lambda i, at: i.hold(reason=reason, at=at, by="sam")
        )

    @rule(step=steps)
    def resume(self, step: timedelta) -> None:
        self.attempt("resume", step, lambda i, at: i.resume(at=at, by="sam"))

    @rule(step=steps, code=codes, notes=texts, by=people)
    def resolve(self, step: timedelta, code: str, notes: str, by: str) -> None:
        ok = code in VALID_CODES and notes in VALID_TEXT
        self.attempt(
            "resolve",
            step,
            valid=ok,
            call=lambda i, at: i.resolve(code=code, notes=notes, at=at, by=by),
        )

    @rule(step=steps, reason=texts)
    def reopen(self, step: timedelta, reason: str) -> None:
        ok = reason in VALID_TEXT
        self.attempt(
            "reopen", step, valid=ok, call=lambda i, at: i.reopen(reason=reason, at=at, by="mia")
        )

    @rule(step=steps)
    def close(self, step: timedelta) -> None:
        self.attempt("close", step, lambda i, at: i.close(at=at, by="mia"))

    @rule(step=steps, reason=texts)
    def cancel(self, step: timedelta, reason: str) -> None:
        ok = reason in VALID_TEXT
        self.attempt(
            "cancel", step, valid=ok, call=lambda i, at: i.cancel(reason=reason, at=at, by="desk")
        )

    @rule(step=steps, group=groups, assignee=st.none() | people)
    def assign(self, step: timedelta, group: str, assignee: str | None) -> None:
        ok = group in VALID_GROUPS
        self.attempt(
            "assign",
            step,
            valid=ok,
            call=lambda i, at: i.assign(group=group, assignee=assignee, at=at, by="desk"),
        )

    @rule(step=steps, group=groups, reason=texts)
    def escalate(self, step: timedelta, group: str, reason: str) -> None:
        ok = group in VALID_GROUPS and reason in VALID_TEXT
        self.attempt(
            "escalate",
            step,
            valid=ok,
            call=lambda i, at: i.escalate(group=group, reason=reason, at=at, by="sam"),
        )

    @rule(step=steps, impact=levels, urgency=levels)
    def reprioritize(self, step: timedelta, impact: Any, urgency: Any) -> None:
        ok = impact in VALID_LEVELS and urgency in VALID_LEVELS
        self.attempt(
            "reprioritize",
            step,
            valid=ok,
            call=lambda i, at: i.reprioritize(
                impact=impact, urgency=urgency, reason="scope changed", at=at, by="sam"
            ),
        )

    @rule(step=steps, text=texts, from_caller=st.booleans())
    def comment(self, step: timedelta, text: str, from_caller: bool) -> None:
        ok = text in VALID_TEXT
        self.attempt(
            "comment",
            step,
            valid=ok,
            call=lambda i, at: i.comment(text=text, from_caller=from_caller, at=at, by="mia"),
        )

    @rule(step=steps, kind=st.sampled_from(["problem", "change", "knowledge"]))
    def link(self, step: timedelta, kind: str) -> None:
        self.attempt("link", step, lambda i, at: i.link(kind=kind, target="X1", at=at, by="s"))

    @invariant()
    def version_is_history_length(self) -> None:
        assert self.incident.version == len(self.incident.history)

    @invariant()
    def replay_rebuilds_the_record(self) -> None:
        assert Incident.replay(self.incident.history) == self.incident

    @invariant()
    def state_belongs_to_the_workflow(self) -> None:
        assert self.incident.state in INCIDENT_WORKFLOW.states
        assert self.incident.history[-1].state == self.incident.state

    @invariant()
    def counters_match_the_history(self) -> None:
        types = [e.type for e in self.incident.history]
        assert self.incident.reopen_count == types.count("incident.reopened")
        assert self.incident.tier == 1 + types.count("incident.escalated")
        assert self.incident.reassignment_count <= types.count("incident.assigned")

    @invariant()
    def time_never_goes_backwards(self) -> None:
        times = [e.at for e in self.incident.history]
        assert times == sorted(times)
        assert all(t.utcoffset() == timedelta(0) for t in times)

    @invariant()
    def resolution_fields_follow_the_state(self) -> None:
        resolved = self.incident.state in (IncidentState.RESOLVED, IncidentState.CLOSED)
        assert (self.incident.resolved_at is not None) == resolved
        assert (self.incident.hold_reason is not None) == (
            self.incident.state is IncidentState.ON_HOLD
        )


TestIncidentMachine = IncidentMachine.TestCase
