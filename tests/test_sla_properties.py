"""SLA clocks against a brute force, over random histories, calendars and policies.

The brute force reads the record's timeline directly: between two consecutive events the
record sits in one state, and the rules say whether the clock runs, is paused or does not
count. Summing the calendar's business time over those intervals must give exactly what
the engine reports, whatever the policy; no policy may lose or double-count a microsecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import attrs
from hypothesis import given
from hypothesis import strategies as st

from itsmcore import BusinessCalendar, Incident, Priority, testing
from itsmcore.sla import Reclassification, Reopen, SLADefinition, SLAStage, evaluate_many

CALENDARS = [
    BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin"),
    BusinessCalendar.always(tz="America/New_York"),
    BusinessCalendar.weekly({"mon-sat": "08:00-12:00,13:00-17:30"}, tz="Asia/Kolkata"),
    BusinessCalendar.weekly({"sun-thu": "22:00-06:00"}, tz="Australia/Lord_Howe"),
]
TARGETS = {
    Priority.P1: timedelta(hours=4),
    Priority.P2: timedelta(hours=8),
    Priority.P3: timedelta(hours=24),
    Priority.P4: timedelta(hours=40),
    Priority.P5: None,
}
# Opening instants near DST changes of the calendars' zones, and ordinary ones.
ANCHORS = [
    datetime(2025, 3, 29, 20, tzinfo=UTC),
    datetime(2025, 3, 8, 20, tzinfo=UTC),
    datetime(2025, 10, 25, 20, tzinfo=UTC),
    datetime(2025, 11, 1, 20, tzinfo=UTC),
    datetime(2025, 4, 5, 10, tzinfo=UTC),
    datetime(2025, 6, 11, 7, 13, tzinfo=UTC),
]
REASONS = ["awaiting_caller", "awaiting_vendor", "awaiting_change", "awaiting_problem"]

gaps = st.integers(min_value=0, max_value=60 * 30).map(lambda m: timedelta(minutes=m))
# Records drawn from the incident workflow itself: every verb, with its own arguments.
histories = partial(
    testing.histories,
    Incident,
    opened=st.builds(lambda anchor, gap: anchor + gap, st.sampled_from(ANCHORS), gaps),
    gaps=gaps,
    max_events=12,
)


@dataclass
class Definition:
    sla: SLADefinition
    pause_on: frozenset[str] | None
    reopen: Reopen
    reclassification: Reclassification


@st.composite
def definitions(draw: st.DrawFn) -> Definition:
    pause_on = draw(st.none() | st.frozensets(st.sampled_from(REASONS), min_size=1))
    reopen = draw(st.sampled_from([Reopen.RESUME, Reopen.NEW_CYCLE]))
    policy = draw(st.sampled_from(list(Reclassification)))
    sla = SLADefinition.incident_resolution(
        TARGETS, draw(st.sampled_from(CALENDARS)), pause_on=pause_on, reopen=reopen,
        reclassification=policy,
    )  # fmt: skip
    return Definition(sla, pause_on, reopen, policy)


def intervals(record: Incident, at: datetime) -> list[tuple[datetime, datetime, Incident]]:
    """``(from, to, snapshot)`` for every stretch between events, up to ``at``.

    Stretches may be empty (two events at one instant): they still change the state.
    """
    steps = [(e.at, r) for e, r in record.timeline() if e.at <= at]
    ends = [t for t, _ in steps[1:]] + [at]
    return [(a, b, r) for (a, r), b in zip(steps, ends, strict=True)]


def brute_force(
    d: Definition, record: Incident, at: datetime
) -> tuple[timedelta, timedelta, timedelta, timedelta, datetime, Priority, Priority]:
    """Running and paused business time, in total and for the last cycle, by reading the rules.

    Returns (total run, total paused, last cycle run, last cycle paused, last cycle start,
    class at the last cycle's start, class now).
    """
    cal = d.sla.calendar
    total_run = total_paused = run = paused = timedelta(0)
    start = record.opened_at
    start_class = current_class = record.timeline()[0][1].priority
    previous: Incident | None = None
    for a, b, r in intervals(record, at):
        # Where does a new cycle begin? At a reopen (new-cycle policy) or at a change of
        # class (restart policy) while the clock is attached.
        reopened = (
            previous is not None and previous.state == "resolved" and r.state == "in_progress"
        )
        reclassed = (
            previous is not None
            and r.priority != previous.priority
            and previous.state in ("new", "in_progress", "on_hold")
        )
        if (reopened and d.reopen is Reopen.NEW_CYCLE) or (
            reclassed and d.reclassification is Reclassification.RESTART
        ):
            run = paused = timedelta(0)
            start, start_class = a, r.priority
        current_class = r.priority
        business = cal.elapsed(a, b)
        on_hold = r.state == "on_hold" and (d.pause_on is None or r.hold_reason in d.pause_on)
        if r.state in ("new", "in_progress", "on_hold") and not on_hold:
            run += business
            total_run += business
        elif on_hold:
            paused += business
            total_paused += business
        previous = r
    return total_run, total_paused, run, paused, start, start_class, current_class


@given(histories(), definitions(), gaps)
def test_the_engine_agrees_with_the_brute_force(
    record: Incident, d: Definition, after: timedelta
) -> None:
    at = record.updated_at + after
    status = d.sla.evaluate(record, at=at)
    total_run, total_paused, run, paused, start, start_class, now_class = brute_force(d, record, at)
    # No policy loses or double-counts time: the cycles partition it.
    assert sum((c.business_elapsed for c in status.cycles), timedelta(0)) == total_run
    assert sum((c.business_paused for c in status.cycles), timedelta(0)) == total_paused
    # The current cycle.
    assert status.business_elapsed == run
    assert status.business_paused == paused
    assert status.started_at == start
    key = start_class if d.reclassification is Reclassification.KEEP else now_class
    assert status.key == key
    target = TARGETS[key]
    assert status.target == target
    last = record.timeline()[-1][1]
    expected_stage = {
        "resolved": SLAStage.COMPLETED,
        "closed": SLAStage.COMPLETED,
        "canceled": SLAStage.CANCELED,
    }.get(last.state)
    if expected_stage is None:
        held = last.state == "on_hold" and (d.pause_on is None or last.hold_reason in d.pause_on)
        expected_stage = SLAStage.PAUSED if held else SLAStage.IN_PROGRESS
    assert status.stage is expected_stage
    if target is None:
        assert (status.breached, status.due_at, status.remaining) == (False, None, None)
        return
    assert status.remaining == target - run
    assert status.breached == (run > target)
    assert status.due_at is not None
    if status.breached:
        assert status.breached_at == status.due_at
        # The due instant is when the running time first reached the target.
        assert d.sla.evaluate(record, at=status.due_at).business_elapsed == target
        assert status.percent is not None
        assert status.percent > 100.0
    elif run < target:
        # Time left: due that much business time after now, or after the clock ended.
        end = at if status.ended_at is None else status.ended_at
        assert d.sla.calendar.elapsed(end, status.due_at) == target - run
    else:  # exactly at the target: due when it was reached, which is not in the future
        assert status.due_at <= at


@given(histories(), definitions())
def test_due_at_never_moves_earlier_while_paused(record: Incident, d: Definition) -> None:
    first = d.sla.evaluate(record, at=record.updated_at)
    if first.stage is not SLAStage.PAUSED or first.target is None:
        return
    dues = [
        d.sla.evaluate(record, at=record.updated_at + k * timedelta(hours=7)).due_at
        for k in range(6)
    ]
    assert dues == sorted(dues)  # type: ignore[type-var]


@given(histories(), definitions(), gaps)
def test_declared_reads_only_speed_things_up(
    record: Incident, d: Definition, after: timedelta
) -> None:
    at = record.updated_at + after
    plain = attrs.evolve(d.sla, reads=None)
    assert d.sla.evaluate(record, at=at) == plain.evaluate(record, at=at)
    assert d.sla.next_event_at(record, at=at) == plain.next_event_at(record, at=at)


@given(histories(), definitions(), gaps)
def test_next_event_at_is_when_the_status_next_changes(
    record: Incident, d: Definition, after: timedelta
) -> None:
    at = record.updated_at + after
    status = d.sla.evaluate(record, at=at)
    wake = d.sla.next_event_at(record, at=at)
    if status.stage is not SLAStage.IN_PROGRESS or status.target is None or status.breached:
        # Paused, finished, without target, or already breached past every warning:
        # nothing more changes by time alone.
        assert wake is None
        return
    assert wake is not None
    assert wake > at
    before = d.sla.evaluate(record, at=wake - timedelta(microseconds=1))
    after_wake = d.sla.evaluate(record, at=wake)

    def flags(s: Any) -> tuple[Any, ...]:
        return (s.breached, len(s.warnings))

    assert flags(before) == flags(status)
    assert flags(after_wake) != flags(status)


def _wrapped(condition: Any) -> Any:
    """The same condition under another identity: the engine cannot tell it never changes."""

    def same(record: Any) -> Any:
        return condition(record)

    return same


@st.composite
def any_definitions(draw: st.DrawFn) -> SLADefinition:
    """Every preset and policy, and custom resets: what the fast path must agree on."""
    calendar = draw(st.sampled_from(CALENDARS))
    policy = draw(st.sampled_from(list(Reclassification)))
    preset = draw(st.sampled_from(["response", "resolution", "ola", "reset"]))
    if preset == "response":
        return SLADefinition.incident_response(TARGETS, calendar, reclassification=policy)
    if preset == "ola":
        return SLADefinition.incident_ola("network", TARGETS, calendar, reclassification=policy)
    reopen = draw(st.sampled_from(list(Reopen)))
    d = SLADefinition.incident_resolution(TARGETS, calendar, reopen=reopen, reclassification=policy)
    if preset == "reset":  # starts over whenever the incident is reassigned to the network team
        d = attrs.evolve(
            d,
            reset=lambda r: r.assignment_group == "network",
            reads=(*(d.reads or ()), "assignment_group"),
        )
    return d


@given(histories(), any_definitions(), gaps)
def test_the_fast_path_agrees_with_asking_every_snapshot(
    record: Incident, d: SLADefinition, after: timedelta
) -> None:
    """Declared reads (skipped snapshots, remembered answers) and stopping the walk once a
    clock is final change no answer: the oracle asks every condition at every snapshot."""
    at = record.updated_at + after
    oracle = attrs.evolve(
        d,
        reads=None,
        start=_wrapped(d.start),
        stop=_wrapped(d.stop),
        pause=_wrapped(d.pause),
        cancel=_wrapped(d.cancel),
        reset=_wrapped(d.reset),
    )
    assert oracle._final == frozenset()
    for when in (at, record.history[0].at + (at - record.history[0].at) / 2):
        assert d.evaluate(record, at=when) == oracle.evaluate(record, at=when)
        assert d.next_event_at(record, at=when) == oracle.next_event_at(record, at=when)


def _expected_frame(records: list[Incident], defs: list[SLADefinition], at: datetime) -> Any:
    """The scalar path's rows, in the frame's fixed column types."""
    import pandas as pd  # noqa: PLC0415 - the frame needs the pandas extra

    rows = evaluate_many(records, defs, at=at, fields=["priority"])
    out = pd.DataFrame(rows, columns=list(rows[0]))
    for name in ("started_at", "due_at", "breached_at"):
        out[name] = pd.to_datetime(out[name], utc=True).dt.as_unit("us").dt.tz_convert(at.tzinfo)
    for name in ("target", "business_elapsed", "elapsed", "paused", "business_paused"):
        out[name] = pd.to_timedelta(out[name]).astype("timedelta64[us]")
    out["remaining"] = pd.to_timedelta(out["remaining"]).astype("timedelta64[us]")
    out["percent"] = out["percent"].astype("float64")
    out["breached"] = out["breached"].astype(bool)
    out["priority"] = pd.Series([r["priority"] for r in rows])
    return out


@given(
    st.lists(histories(), min_size=1, max_size=6),
    st.lists(any_definitions(), min_size=1, max_size=3),
    gaps,
    st.sampled_from([UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")]),
)
def test_the_frame_has_the_rows_answers(
    records: list[Incident], defs: list[SLADefinition], after: timedelta, zone: Any
) -> None:
    """evaluate_many(frame=True) computes its figures on whole columns: the same answers as
    the rows, in fixed column types (not-started clocks, best effort, a past instant)."""
    import pandas as pd  # noqa: PLC0415

    latest = max(r.updated_at for r in records)
    for at in ((latest + after).astimezone(zone), records[0].history[0].at.astimezone(zone)):
        frame = evaluate_many(records, defs, at=at, frame=True, fields=["priority"])
        pd.testing.assert_frame_equal(frame, _expected_frame(records, defs, at))
        assert str(frame["due_at"].dtype) == f"datetime64[us, {at.tzinfo}]"
        assert frame["percent"].dtype == "float64"


def test_the_frame_figures_records_too_far_apart_for_one_question_one_by_one() -> None:
    """Records more than the calendar's span limit apart are figured each on its own."""
    calendar = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin")
    d = SLADefinition.incident_resolution(TARGETS, calendar)
    old = Incident.open(
        id="OLD",
        title="t",
        caller="c",
        impact=2,
        urgency=2,
        by="d",
        at=datetime(1950, 3, 6, 9, tzinfo=UTC),
    ).resolve(code="solution_provided", notes="n", at=datetime(1950, 3, 8, 9, tzinfo=UTC), by="d")
    new = Incident.open(
        id="NEW", title="t", caller="c", impact=2, urgency=2, by="d",
        at=datetime(2075, 3, 4, 9, tzinfo=UTC),
    )  # fmt: skip
    at = datetime(2075, 3, 5, 9, tzinfo=UTC)
    import pandas as pd  # noqa: PLC0415

    frame = evaluate_many([old, new], [d], at=at, frame=True, fields=["priority"])
    pd.testing.assert_frame_equal(frame, _expected_frame([old, new], [d], at))
    assert frame["stage"].tolist() == ["completed", "in_progress"]
    assert frame["business_elapsed"].tolist() == [timedelta(hours=16), timedelta(hours=8)]


@given(
    st.lists(histories(), min_size=1, max_size=4),
    st.lists(any_definitions(), min_size=2, max_size=4),
    gaps,
)
def test_one_walk_for_several_clocks_answers_as_each_alone(
    records: list[Incident], defs: list[SLADefinition], after: timedelta
) -> None:
    """evaluate_many walks each history once for all definitions, the clocks that finish
    early dropping out: every row is what evaluate says for that definition alone."""
    latest = max(r.updated_at for r in records)
    for at in (latest + after, records[0].history[0].at):
        rows = evaluate_many(records, defs, at=at)
        alone = [{"record": r.id, **d.evaluate(r, at=at).as_row()} for r in records for d in defs]
        assert rows == alone
