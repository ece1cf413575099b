"""Regression tests for what the attack on the library got through (outside the stores).

Each case was a silent wrong answer, a raw built-in exception or a crash before; each is now
a typed error at definition time where possible, or a correct answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from itsmcore import (
    BusinessCalendar,
    DefinitionError,
    Incident,
    ItsmError,
    Priority,
    Transition,
    ValidationError,
    Workflow,
)
from itsmcore.calendar import MAX_SPAN
from itsmcore.sla import Reclassification, Reopen, SLADefinition, SLAKind

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
H = timedelta(hours=1)
TARGETS = dict.fromkeys(Priority, 4 * H)


def incident(**fields: Any) -> Incident:
    spec = {"id": "INC1", "title": "Mail down", "caller": "mia", "impact": 2, "urgency": 2,
            "at": T0, "by": "desk"} | fields  # fmt: skip
    return Incident.open(**spec)


# --------------------------------------------------------------------------- SLA policies


def test_policies_given_as_their_documented_strings_act_as_those_policies() -> None:
    # A reopened incident's clock must count on (resume): 1 h before the resolution plus
    # 3 h after the reopen. Compared by identity, "resume" used to act as another policy
    # and report 1 h, a breach never reported.
    i = incident().resolve(code="duplicate", notes="x", at=T0 + H, by="s")
    i = i.reopen(reason="back", at=T0 + 2 * H, by="mia")
    as_text = SLADefinition.incident_resolution(TARGETS, reopen="resume")
    as_member = SLADefinition.incident_resolution(TARGETS, reopen=Reopen.RESUME)
    assert as_text.reopen is Reopen.RESUME
    at = T0 + 5 * H
    assert as_text.evaluate(i, at=at) == as_member.evaluate(i, at=at)
    assert as_text.evaluate(i, at=at).business_elapsed == 4 * H
    assert SLADefinition.incident_resolution(TARGETS, reclassification="Keep").reclassification is (
        Reclassification.KEEP
    )
    assert SLADefinition(name="x", targets=TARGETS, stop=bool, kind="ola").kind is SLAKind.OLA


@pytest.mark.parametrize(
    ("option", "value"),
    [("reopen", "bogus"), ("reopen", None), ("reclassification", 3), ("kind", "vendor")],
)
def test_unknown_policies_are_refused_when_defined(option: str, value: object) -> None:
    with pytest.raises(DefinitionError, match="use one of"):
        SLADefinition(name="x", targets=TARGETS, stop=bool, **{option: value})


def test_reads_are_checked() -> None:
    with pytest.raises(DefinitionError, match=r"collection of field names, e.g. \('state',\)"):
        SLADefinition(name="x", targets=TARGETS, stop=bool, reads="state")
    typo = SLADefinition(name="typo", targets=TARGETS, stop=bool, reads=("state", "stat"))
    with pytest.raises(ValidationError, match="reads names 'stat', which Incident records"):
        typo.evaluate(incident(), at=T0)


# --------------------------------------------------------------------------- bad definitions


@pytest.mark.parametrize(
    "build",
    [
        lambda: BusinessCalendar.always(tz="Europe"),  # a directory of zones
        lambda: SLADefinition.resolution(TARGETS, warnings=[float("inf")]),
        lambda: SLADefinition.resolution(TARGETS, classify=len, classes=5),
        lambda: SLADefinition.incident_resolution(TARGETS, pause_on=5),
        lambda: SLADefinition.incident_resolution(TARGETS, pause_on="awaiting_caller"),
        lambda: Workflow(name="w", states=5, initial="a", terminal="b", transitions=()),
        lambda: Workflow(name="w", states=("a", "b"), initial=["a"], terminal="b", transitions=()),
        lambda: Workflow(name="w", states=("a", "b"), initial="a", terminal=None, transitions=()),
        lambda: Workflow(name="w", states=("a", "b"), initial="a", terminal="b", transitions="go"),
        lambda: Transition("go", None, "b"),
        lambda: Transition("go", "a", "b", guards=5),
        lambda: Transition("go", "a", "b", guards=[5]),
    ],
)
def test_wrong_typed_definitions_are_typed_errors(build: Callable[[], object]) -> None:
    with pytest.raises(ItsmError):
        build()


def test_answers_beyond_the_years_a_datetime_holds_are_typed_errors() -> None:
    late = datetime(9999, 12, 30, tzinfo=UTC)
    with pytest.raises(ValidationError, match="9999"):
        BusinessCalendar.always().add(late, timedelta(days=3))


# --------------------------------------------------------------------------- verbs


def test_flags_must_be_booleans() -> None:
    with pytest.raises(ValidationError, match="from_caller must be True or False"):
        incident().comment(text="hello", from_caller="no", at=T0, by="mia")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: incident(title="a\x00b"), "title"),
        (lambda: incident(caller="mi\ud800a"), "caller"),
        (lambda: incident(description="x\x00"), "description"),
        (lambda: incident(service="s" * 256), "service"),
        (lambda: incident().comment(text="\x00", at=T0, by="mia"), "text"),
        (lambda: incident().start(at=T0, by="sam\x00"), "by"),
        (lambda: incident().update(ci="c" * 300, at=T0, by="sam"), "ci"),
    ],
)
def test_text_no_store_can_keep_is_refused_when_the_record_is_built(
    build: Callable[[], object], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        build()


# --------------------------------------------------------------------------- diagrams


def test_diagrams_quote_state_names_that_are_not_identifiers() -> None:
    wf = Workflow(
        name='a "quoted" flow',
        states=("new", "awaiting approval", 'do"ne', "state1"),
        initial="new",
        terminal=('do"ne',),
        transitions=(
            Transition("ask", "new", "awaiting approval"),
            Transition("pass", "awaiting approval", "state1"),
            Transition("finish", "state1", 'do"ne'),
        ),
    )
    mermaid = wf.to_mermaid()
    assert 'state "awaiting approval" as _state1' in mermaid  # state1 is a real state's name
    assert 'state "do#quot;ne" as state2' in mermaid
    assert "_state1 --> state1 : pass" in mermaid
    dot = wf.to_dot()
    assert dot.startswith('digraph "a \\"quoted\\" flow" {')
    assert '"state1" -> "do\\"ne" [label="finish"];' in dot


# --------------------------------------------------------------------------- bounded cost


OFFICE = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin")


def test_a_question_no_arithmetic_can_answer_is_refused_after_a_century() -> None:
    # Elapsed and added business time over any span are arithmetic now (see
    # test_calendar_long.py); a calendar that never closes still cannot say when it closes.
    with pytest.raises(ValidationError, match="it never closes"):
        BusinessCalendar.always().next_close(T0)  # at once
    closed_once = BusinessCalendar.always(closures=[(T0 - 2 * H, T0 - H)])
    with pytest.raises(ValidationError, match="it never closes"):
        closed_once.next_close(T0)
    assert closed_once.next_close(T0 - 3 * H) == T0 - 2 * H
    # Open around the clock on weekdays only: it closes on Friday at midnight.
    weekdays = BusinessCalendar.weekly({"mon-fri": "00:00-24:00"}, tz="UTC")
    assert weekdays.next_close(T0) == datetime(2025, 3, 8, tzinfo=UTC)
    far_holiday = BusinessCalendar.always(tz="Europe/Berlin", holidays=[date(2200, 1, 1)])
    with pytest.raises(ValidationError, match="36,525 days"):  # after a century of search
        far_holiday.next_close(T0)


def test_a_target_the_calendar_cannot_deliver_within_the_limit_is_refused_when_defined() -> None:
    with pytest.raises(DefinitionError, match="needs more than 36,525 days"):
        SLADefinition.incident_resolution({p: timedelta(days=10**6) for p in Priority}, OFFICE)


def test_long_questions_within_the_limit_still_work_from_either_side_of_a_full_segment() -> None:
    cal = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="UTC")
    monday_2000 = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday
    weeks = 5_000  # 96 years
    assert cal.elapsed(monday_2000, monday_2000 + timedelta(weeks=weeks)) == (
        timedelta(hours=40) * weeks
    )
    monday = datetime(2001, 1, 1, 9, tzinfo=UTC)
    assert cal.add(monday, -timedelta(hours=8) * 5 * 52 * 3) == monday - timedelta(weeks=156)
    friday_close = monday + timedelta(weeks=156) - timedelta(days=2, hours=16)  # earliest
    assert cal.add(monday, timedelta(hours=8) * 5 * 52 * 3) == friday_close


def test_the_calendar_cache_stays_bounded_under_scattered_questions() -> None:
    cal = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin")
    for year in range(100, 9900, 37):  # 265 questions, each centuries from the last
        day = datetime(year, 6, 2, tzinfo=UTC)
        assert cal.elapsed(day, day + timedelta(days=7)) == timedelta(hours=40)
    segments = cal._cache.segments
    assert len(segments) <= 16
    assert sum(s.hi - s.lo for s in segments) <= 2 * (MAX_SPAN // timedelta(microseconds=1))


def test_a_record_holds_a_bounded_number_of_events() -> None:
    from itsmcore.record import MAX_EVENTS  # noqa: PLC0415

    record = incident()
    for _ in range(MAX_EVENTS - 1):
        record = record.comment(text="still waiting", at=T0, by="mia")
    assert record.version == MAX_EVENTS
    with pytest.raises(ValidationError, match="holds 10,000 events, the most one record may"):
        record.comment(text="one more", at=T0, by="mia")
    with pytest.raises(ValidationError, match="the most one record may"):
        record.update(title=record.title, at=T0, by="mia")  # even a change of nothing
    assert Incident.replay(record.history) == record  # what is stored still loads
