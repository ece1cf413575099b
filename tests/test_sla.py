"""SLA clocks: the documented semantics as tables, and properties against a brute force."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from itsmcore import BusinessCalendar, DefinitionError, Incident, Priority, ValidationError
from itsmcore.sla import (
    Reclassification,
    Reopen,
    SLADefinition,
    SLAKind,
    SLAStage,
    evaluate_many,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
H = timedelta(hours=1)
M = timedelta(minutes=1)
NINE_TO_FIVE = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin")
TARGETS = {
    Priority.P1: 4 * H,
    Priority.P2: 8 * H,
    Priority.P3: 24 * H,
    Priority.P4: 40 * H,
    Priority.P5: None,
}
MON = datetime(2025, 3, 3, 9, tzinfo=BERLIN)  # a Monday, 09:00
TUE_10 = datetime(2025, 3, 4, 10, tzinfo=BERLIN)
TUE_11 = datetime(2025, 3, 4, 11, tzinfo=BERLIN)


def incident(at: datetime = MON, impact: int = 1, urgency: int = 2, **kw: Any) -> Incident:
    """P2 by default (8 business hours to resolve)."""
    return Incident.open(
        id="INC1", title="Mail down", caller="mia", impact=impact, urgency=urgency, at=at,
        by="desk", **kw,
    )  # fmt: skip


def resolution(**kw: Any) -> SLADefinition:
    return SLADefinition.incident_resolution(TARGETS, NINE_TO_FIVE, **kw)


# --------------------------------------------------------------------------- the timeline


def held_and_resumed() -> Incident:
    """Open Mon 09:00, assign 10:00, start 11:00, hold 12:00 (caller), resume 14:00."""
    return (
        incident()
        .assign(group="mail", at=MON + H, by="desk")
        .start(at=MON + 2 * H, by="sam")
        .hold(reason="awaiting_caller", at=MON + 3 * H, by="sam")
        .resume(at=MON + 5 * H, by="sam")
    )


@pytest.mark.parametrize(
    ("at", "stage", "elapsed", "paused", "due", "breached"),
    [
        (MON, SLAStage.IN_PROGRESS, 0 * H, 0 * H, MON + 8 * H, False),
        (MON + 2 * H, SLAStage.IN_PROGRESS, 2 * H, 0 * H, MON + 8 * H, False),
        # Paused at 12:00 with 5 h left: due if resumed now, 13:00 + 5 h = Tue 10:00.
        (MON + 4 * H, SLAStage.PAUSED, 3 * H, 1 * H, TUE_10, False),
        (MON + 6 * H, SLAStage.IN_PROGRESS, 4 * H, 2 * H, TUE_11, False),
        # Tuesday 11:00 exactly: 8 h run, at the target, not yet breached.
        (datetime(2025, 3, 4, 11, tzinfo=BERLIN), SLAStage.IN_PROGRESS, 8 * H, 2 * H,
         datetime(2025, 3, 4, 11, tzinfo=BERLIN), False),
        (datetime(2025, 3, 4, 11, 0, 0, 1, tzinfo=BERLIN), SLAStage.IN_PROGRESS,
         8 * H + timedelta(microseconds=1), 2 * H, datetime(2025, 3, 4, 11, tzinfo=BERLIN), True),
    ],
)  # fmt: skip
def test_resolution_clock_over_time(
    at: datetime,
    stage: SLAStage,
    elapsed: timedelta,
    paused: timedelta,
    due: datetime,
    breached: bool,
) -> None:
    status = resolution().evaluate(held_and_resumed(), at=at)
    assert status.stage is stage
    assert status.business_elapsed == elapsed
    assert status.business_paused == paused
    assert status.due_at == due
    assert status.breached is breached
    assert status.remaining == 8 * H - elapsed
    assert status.target == 8 * H
    assert status.key is Priority.P2


def test_breach_is_exact_at_the_microsecond() -> None:
    definition = resolution()
    record = held_and_resumed()
    due = datetime(2025, 3, 4, 11, tzinfo=BERLIN)
    on_time = definition.evaluate(record, at=due)
    late = definition.evaluate(record, at=due + timedelta(microseconds=1))
    assert (on_time.percent, on_time.breached, on_time.breached_at) == (100.0, False, None)
    assert on_time.remaining == timedelta(0)
    assert late.percent is not None
    assert late.percent > 100.0
    assert late.breached
    assert late.breached_at == due
    assert late.remaining == -timedelta(microseconds=1)


def test_warnings_are_crossed_at_exact_instants() -> None:
    status = resolution().evaluate(held_and_resumed(), at=datetime(2025, 3, 5, 9, tzinfo=BERLIN))
    assert status.warnings == (
        (Fraction(1, 2), MON + 6 * H),  # 4 h run: 09-12 and 14-15
        (Fraction(3, 4), MON + 8 * H),  # 6 h: Monday 17:00
        (Fraction(1), datetime(2025, 3, 4, 11, tzinfo=BERLIN)),
    )
    custom = resolution(warnings=[0.9, "1/4"])
    early = custom.evaluate(held_and_resumed(), at=MON + 6 * H)
    assert early.warnings == ((Fraction(1, 4), MON + 2 * H),)


def test_next_event_at_wakes_a_scheduler_exactly_when_something_happens() -> None:
    definition, record = resolution(), held_and_resumed()
    at = MON + 5 * H
    seen = []
    for _ in range(5):
        at = definition.next_event_at(record, at=at)
        if at is None:
            break
        seen.append(at)
    assert seen == [
        MON + 6 * H,  # 50 %
        MON + 8 * H,  # 75 %
        datetime(2025, 3, 4, 11, tzinfo=BERLIN),  # 100 %: due
        datetime(2025, 3, 4, 11, 0, 0, 1, tzinfo=BERLIN),  # breached
    ]
    assert definition.next_event_at(record, at=MON + 4 * H) is None  # paused: nothing by time


def test_evaluating_earlier_answers_what_the_clock_said_then() -> None:
    definition = resolution()
    later = held_and_resumed().resolve(code="duplicate", notes="x", at=MON + 7 * H, by="sam")
    assert definition.evaluate(later, at=MON + 4 * H) == definition.evaluate(
        held_and_resumed(), at=MON + 4 * H
    )
    before_open = definition.evaluate(later, at=MON - H)
    assert before_open.stage is SLAStage.NOT_STARTED
    assert before_open.cycles == ()
    assert before_open.business_elapsed == timedelta(0)
    done = definition.evaluate(later, at=datetime(2025, 3, 10, tzinfo=BERLIN))
    assert (done.stage, done.business_elapsed, done.ended_at) == (
        SLAStage.COMPLETED,
        5 * H,  # 09-12 and 14-16
        MON + 7 * H,
    )


def test_pausing_only_for_chosen_hold_reasons() -> None:
    record = (
        incident()
        .hold(reason="awaiting_vendor", at=MON + H, by="sam")
        .resume(at=MON + 2 * H, by="sam")
        .hold(reason="awaiting_caller", at=MON + 3 * H, by="sam")
    )
    at = MON + 4 * H
    everything = resolution().evaluate(record, at=at)
    caller_only = resolution(pause_on=["awaiting_caller"]).evaluate(record, at=at)
    assert (everything.business_elapsed, everything.business_paused) == (2 * H, 2 * H)
    assert (caller_only.business_elapsed, caller_only.business_paused) == (3 * H, 1 * H)


def test_response_stops_at_first_assignment_or_start_and_is_final() -> None:
    response = SLADefinition.incident_response(dict.fromkeys(Priority, 30 * M), NINE_TO_FIVE)
    record = incident().assign(group="mail", at=MON + 20 * M, by="desk")
    status = response.evaluate(record, at=MON + 5 * H)
    assert (status.stage, status.business_elapsed, status.breached) == (
        SLAStage.COMPLETED,
        20 * M,
        False,
    )
    started = incident().start(at=MON + 45 * M, by="sam")
    late = response.evaluate(started, at=MON + 2 * H)
    assert (late.stage, late.breached, late.breached_at) == (
        SLAStage.COMPLETED,
        True,
        MON + 30 * M,
    )
    reopened = (
        record.start(at=MON + H, by="s")
        .resolve(code="duplicate", notes="x", at=MON + 2 * H, by="s")
        .reopen(reason="again", at=MON + 3 * H, by="mia")
    )
    assert len(response.evaluate(reopened, at=MON + 5 * H).cycles) == 1
    canceled = incident().cancel(reason="duplicate", at=MON + 10 * M, by="desk")
    assert response.evaluate(canceled, at=MON + H).stage is SLAStage.CANCELED


def resolved_then_reopened() -> Incident:
    """Open Mon 09:00, resolved 13:00 (4 h), reopened Tue 09:00, evaluated Tue 11:00."""
    return (
        incident()
        .resolve(code="solution_provided", notes="restarted", at=MON + 4 * H, by="sam")
        .reopen(reason="broken again", at=MON + 24 * H, by="mia")
    )


def test_a_reopened_incident_counts_on_or_starts_afresh() -> None:
    at = MON + 26 * H
    resumed = resolution().evaluate(resolved_then_reopened(), at=at)
    assert (resumed.stage, resumed.business_elapsed, len(resumed.cycles)) == (
        SLAStage.IN_PROGRESS,
        6 * H,
        1,
    )
    fresh = resolution(reopen=Reopen.NEW_CYCLE).evaluate(resolved_then_reopened(), at=at)
    assert [c.stage for c in fresh.cycles] == [SLAStage.COMPLETED, SLAStage.IN_PROGRESS]
    assert [c.business_elapsed for c in fresh.cycles] == [4 * H, 2 * H]
    assert fresh.started_at == MON + 24 * H


def reprioritized_while_paused() -> Incident:
    """P3 opened Mon 09:00; hold 10:00-12:00; raised to P1 at 13:00; evaluated 14:00."""
    return (
        incident(impact=2, urgency=2)
        .hold(reason="awaiting_caller", at=MON + H, by="sam")
        .resume(at=MON + 3 * H, by="sam")
        .reprioritize(impact=1, urgency=1, reason="CEO affected", at=MON + 4 * H, by="sam")
    )


def test_reclassification_policies_and_no_pause_is_ever_lost() -> None:
    at = MON + 5 * H
    recompute = resolution(reclassification=Reclassification.RECOMPUTE)
    status = recompute.evaluate(reprioritized_while_paused(), at=at)
    assert (status.key, status.target, status.business_elapsed, status.business_paused) == (
        Priority.P1,
        4 * H,
        3 * H,
        2 * H,
    )
    assert status.due_at == MON + 6 * H
    assert len(status.cycles) == 1

    restart = resolution(reclassification=Reclassification.RESTART)
    status = restart.evaluate(reprioritized_while_paused(), at=at)
    old, new = status.cycles
    assert (old.stage, old.key, old.business_elapsed, old.business_paused) == (
        SLAStage.CANCELED,
        Priority.P3,
        2 * H,
        2 * H,
    )
    assert (new.stage, new.key, new.business_elapsed, new.started_at) == (
        SLAStage.IN_PROGRESS,
        Priority.P1,
        1 * H,
        MON + 4 * H,
    )

    keep = resolution(reclassification=Reclassification.KEEP)
    status = keep.evaluate(reprioritized_while_paused(), at=at)
    assert (status.key, status.target, status.business_elapsed, status.business_paused) == (
        Priority.P3,
        24 * H,
        3 * H,
        2 * H,
    )


def test_an_ola_counts_only_while_its_group_holds_the_incident() -> None:
    ola = SLADefinition.incident_ola("network", dict.fromkeys(Priority, 2 * H), NINE_TO_FIVE)
    assert ola.kind is SLAKind.OLA
    record = (
        incident()
        .assign(group="desk", at=MON, by="desk")
        .assign(group="network", at=MON + H, by="desk")
        .assign(group="desk", at=MON + 2 * H, by="kim")
        .assign(group="network", at=MON + 4 * H, by="desk")
    )
    status = ola.evaluate(record, at=MON + 5 * H)
    assert (status.stage, status.business_elapsed, status.business_paused) == (
        SLAStage.IN_PROGRESS,
        2 * H,
        2 * H,
    )
    assert status.started_at == MON + H
    assert status.remaining == timedelta(0)
    assert ola.evaluate(incident(), at=MON + H).stage is SLAStage.NOT_STARTED


def test_cancel_and_reset_conditions() -> None:
    # A custom definition: reset whenever the incident changes assignment group to "vip".
    definition = SLADefinition(
        name="custom",
        targets=dict.fromkeys(Priority, 2 * H),
        calendar=NINE_TO_FIVE,
        stop=lambda r: r.state == "resolved",
        reset=lambda r: r.assignment_group == "vip",
        cancel=lambda r: r.state == "canceled",
    )
    record = incident().assign(group="vip", at=MON + H, by="desk")
    status = definition.evaluate(record, at=MON + 2 * H)
    assert [c.stage for c in status.cycles] == [SLAStage.CANCELED, SLAStage.IN_PROGRESS]
    assert [c.business_elapsed for c in status.cycles] == [H, H]
    canceled = record.cancel(reason="dup", at=MON + 3 * H, by="desk")
    assert definition.evaluate(canceled, at=MON + 4 * H).stage is SLAStage.CANCELED


def test_dst_breach_instants_in_berlin_and_new_york() -> None:
    p1 = dict.fromkeys(Priority, 4 * H)
    berlin = SLADefinition.incident_resolution(p1, BusinessCalendar.always(tz="Europe/Berlin"))
    opened = datetime(2025, 3, 30, 0, 30, tzinfo=BERLIN)  # the spring-forward night
    status = berlin.evaluate(incident(at=opened), at=datetime(2025, 3, 30, 12, tzinfo=BERLIN))
    assert status.breached_at == datetime(2025, 3, 30, 5, 30, tzinfo=BERLIN)
    assert status.breached_at.utcoffset() == 2 * H
    autumn = datetime(2025, 10, 26, 0, 30, tzinfo=BERLIN)  # 02:00-03:00 happens twice
    status = berlin.evaluate(incident(at=autumn), at=datetime(2025, 10, 26, 12, tzinfo=BERLIN))
    assert status.breached_at == datetime(2025, 10, 26, 3, 30, tzinfo=BERLIN)
    new_york = SLADefinition.incident_resolution(
        dict.fromkeys(Priority, 2 * H), BusinessCalendar.always(tz="America/New_York")
    )
    fall = datetime(2025, 11, 2, 0, 30, tzinfo=NEW_YORK)
    status = new_york.evaluate(incident(at=fall), at=datetime(2025, 11, 2, 9, tzinfo=NEW_YORK))
    assert status.breached_at is not None
    assert status.breached_at.astimezone(UTC) == datetime(2025, 11, 2, 6, 30, tzinfo=UTC)
    assert status.breached_at.isoformat() == "2025-11-02T01:30:00-05:00"  # the second 01:30


def test_results_are_shown_in_the_zone_of_at() -> None:
    status = resolution().evaluate(held_and_resumed(), at=(MON + 6 * H).astimezone(UTC))
    assert status.due_at is not None
    assert status.due_at.tzinfo is UTC
    assert status.evaluated_at == MON + 6 * H


def test_evaluate_many_shares_one_replay_per_record_and_makes_rows() -> None:
    response = SLADefinition.incident_response(dict.fromkeys(Priority, 30 * M), NINE_TO_FIVE)
    records = [held_and_resumed(), resolved_then_reopened()]
    at = MON + 27 * H  # Tuesday 12:00: the first is an hour past its target
    rows = evaluate_many(records, [resolution(), response], at=at)
    assert [(r["record"], r["sla"]) for r in rows] == [
        ("INC1", "incident resolution"),
        ("INC1", "incident response"),
        ("INC1", "incident resolution"),
        ("INC1", "incident response"),
    ]
    expected = [d.evaluate(r, at=at).as_row() for r in records for d in (resolution(), response)]
    assert [{k: v for k, v in row.items() if k != "record"} for row in rows] == expected
    frame = evaluate_many(records, [resolution()], at=at, frame=True)
    assert list(frame["breached"]) == [True, False]
    assert frame.loc[0, "class"] == "P2"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"targets": {Priority.P1: H}}, "no target for P2, P3, P4, P5"),
        ({"targets": {}}, "targets must map"),
        ({"targets": dict.fromkeys(Priority, -H)}, "non-negative"),
        ({"targets": dict.fromkeys(Priority, 3600)}, "timedelta"),
        ({"name": " "}, "needs a name"),
        ({"stop": "resolved"}, "stop must be callable"),
        ({"warnings": [0]}, "positive"),
        ({"warnings": ["half"]}, "fractions"),
        ({"calendar": "9-5"}, "BusinessCalendar"),
        ({"reads": ["", "state"]}, "reads must name"),
    ],
)
def test_broken_definitions_fail_when_defined(kwargs: dict[str, Any], message: str) -> None:
    spec: dict[str, Any] = {
        "name": "broken",
        "targets": dict.fromkeys(Priority, H),
        "stop": lambda r: r.state == "resolved",
    } | kwargs
    with pytest.raises(DefinitionError, match=message):
        SLADefinition(**spec)


def test_unknown_classes_are_refused_when_evaluated() -> None:
    by_category = SLADefinition(
        name="by category",
        targets={"network": 2 * H},
        classify=lambda r: r.category,
        classes=None,  # the classifier's range is open: checked per record
        stop=lambda r: r.state == "resolved",
    )
    assert by_category.evaluate(incident(category="network"), at=MON + H).target == 2 * H
    with pytest.raises(ValidationError, match="no target for 'printer'"):
        by_category.evaluate(incident(category="printer"), at=MON + H)
    with pytest.raises(ValidationError, match="naive"):
        by_category.evaluate(incident(category="network"), at=datetime(2025, 3, 3))


def test_best_effort_classes_count_but_never_breach() -> None:
    status = resolution().evaluate(incident(impact=3, urgency=3), at=MON + 100 * H)
    assert status.key is Priority.P5
    assert status.target is None
    assert (status.breached, status.due_at, status.percent, status.remaining) == (
        False,
        None,
        None,
        None,
    )
    assert status.business_elapsed > timedelta(0)


@pytest.mark.parametrize("reads", [None, ("assignment_group",)])
def test_start_and_cancel_together_cancel_at_once_whatever_follows(
    reads: tuple[str, ...] | None,
) -> None:
    # Triage to a spam queue both starts and cancels the clock; later unrelated events
    # (work starting, a hold) must not cancel it a second time or let it run.
    definition = SLADefinition(
        name="triaged",
        targets=dict.fromkeys(Priority, 2 * H),
        calendar=NINE_TO_FIVE,
        start=lambda r: r.assignment_group is not None,
        stop=lambda r: r.state == "resolved",
        cancel=lambda r: r.assignment_group == "spam",
        reads=reads,
    )
    record = (
        incident()
        .assign(group="spam", at=MON + H, by="desk")
        .start(at=MON + 2 * H, by="sam")
        .hold(reason="awaiting_caller", at=MON + 3 * H, by="sam")
    )
    status = definition.evaluate(record, at=MON + 5 * H)
    assert [(c.stage, c.started_at, c.business_elapsed) for c in status.cycles] == [
        (SLAStage.CANCELED, MON + H, timedelta(0))
    ]
    moved = record.assign(group="mail", at=MON + 6 * H, by="desk")  # cancel stops holding
    assert [c.stage for c in definition.evaluate(moved, at=MON + 7 * H).cycles] == [
        SLAStage.CANCELED
    ]


def test_evaluate_many_rows_carry_business_paused_time_and_the_fields_asked_for() -> None:
    from itsmcore.sla import evaluate_many  # noqa: PLC0415

    rows = evaluate_many(
        [held_and_resumed()], [resolution()], at=MON + 6 * H, fields=("assignment_group", "state")
    )
    (row,) = rows
    assert (row["paused"], row["business_paused"]) == (2 * H, 2 * H)
    assert (row["assignment_group"], row["state"]) == ("mail", "in_progress")
    frame = evaluate_many(
        [held_and_resumed()], [resolution()], at=MON + 6 * H, frame=True, fields=["priority"]
    )
    assert list(frame.columns) == [
        "record", "sla", "stage", "class", "target", "started_at", "business_elapsed",
        "elapsed", "paused", "business_paused", "remaining", "due_at", "breached",
        "breached_at", "percent", "cycles", "priority",
    ]  # fmt: skip
    with pytest.raises(ValidationError, match="fields: "):
        evaluate_many([held_and_resumed()], [resolution()], at=MON, fields=["colour"])
    with pytest.raises(ValidationError, match="collection of field names"):
        evaluate_many([held_and_resumed()], [resolution()], at=MON, fields="state")


# --------------------------------------------------------------------------- the story


def test_explain_tells_the_story_the_figures_tell() -> None:
    record = (
        held_and_resumed()
        .resolve(code="solution_provided", notes="ok", at=TUE_10, by="sam")
        .reopen(reason="again", at=TUE_11, by="mia")
    )
    later = datetime(2025, 3, 5, 17, tzinfo=BERLIN)
    story = resolution().explain(record, at=later)
    assert [m.what for m in story] == [
        "started", "paused", "resumed", "warning 50 %", "warning 75 %", "completed",
        "resumed after reopening", "breached",
    ]  # fmt: skip
    assert [m.at for m in story] == sorted(m.at for m in story)
    assert {m.at.tzinfo for m in story} == {BERLIN}
    status = resolution().evaluate(record, at=later)
    assert story[-1].at == status.breached_at
    assert story[-1].business_elapsed == status.target
    paused = next(m for m in story if m.what == "paused")
    assert resolution().evaluate(record, at=paused.at).stage is SLAStage.PAUSED
    # Nothing after ``at`` is told, and a reset starts a new cycle.
    assert [m.what for m in resolution().explain(record, at=MON + 3 * H)] == [
        "started", "paused",
    ]  # fmt: skip
    reset = SLADefinition(
        name="custom",
        targets=dict.fromkeys(Priority, 2 * H),
        calendar=NINE_TO_FIVE,
        stop=lambda r: r.state == "resolved",
        reset=lambda r: r.assignment_group == "vip",
    )
    moved = incident().assign(group="vip", at=MON + H, by="desk")
    assert [(m.what, m.business_elapsed) for m in reset.explain(moved, at=MON + 2 * H)] == [
        # the first cycle reached half its target as it was reset, the second an hour on
        ("started", 0 * H), ("restarted", 0 * H), ("warning 50 %", H), ("warning 50 %", H),
    ]  # fmt: skip


def test_explain_refuses_a_naive_instant() -> None:
    with pytest.raises(ValidationError, match="naive"):
        resolution().explain(incident(), at=datetime(2025, 3, 3, 9))
