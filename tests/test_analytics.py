"""KPIs: against brute-force recomputation from histories, decomposable over any partitioning,
typed errors for bad input, and the same answers per partition under Dask on the real log."""

from __future__ import annotations

import io
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

import test_real_log as real
from itsmcore import (
    BusinessCalendar,
    Change,
    Incident,
    IncidentState,
    Priority,
    SLADefinition,
    ValidationError,
)
from itsmcore import analytics as kpi
from itsmcore.change import ApprovalLevel, change_measures
from itsmcore.io import read_incident_log

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)
OFFICE = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin")
GROUPS = ("L1", "L2", "DB")
PEOPLE = ("ann", "bob", "cid")
OPEN = (IncidentState.NEW, IncidentState.IN_PROGRESS, IncidentState.ON_HOLD)
DONE = (IncidentState.RESOLVED, IncidentState.CLOSED)


# --------------------------------------------------------------------------- random histories


def _step(inc: Incident, trigger: str, at: datetime, draw: Any) -> Incident:
    who = draw(st.sampled_from(PEOPLE))
    if trigger == "start":
        return inc.start(at=at, by=who)
    if trigger == "assign":
        group = draw(st.sampled_from((*GROUPS, None)))
        person = draw(st.sampled_from((*PEOPLE, None)))
        if group is None and person is None:
            return inc.assign(assignee=who, at=at, by=who)
        return inc.assign(group=group or inc.assignment_group, assignee=person, at=at, by=who)
    if trigger == "hold":
        return inc.hold(reason="awaiting_vendor", at=at, by=who)
    if trigger == "resume":
        return inc.resume(at=at, by=who)
    if trigger == "resolve":
        return inc.resolve(code="solution_provided", notes="fixed", at=at, by=who)
    if trigger == "reopen":
        return inc.reopen(reason="came back", at=at, by=who)
    if trigger == "close":
        return inc.close(at=at, by=who)
    if trigger == "cancel":
        return inc.cancel(reason="duplicate", at=at, by=who)
    return inc.escalate(reason="needs L2", group="L2", at=at, by=who)


_TRIGGERS = (
    "start",
    "assign",
    "hold",
    "resume",
    "resolve",
    "reopen",
    "close",
    "cancel",
    "escalate",
)


@st.composite
def incidents(draw: Any, n: int | None = None) -> list[Incident]:
    count = draw(st.integers(0, 8)) if n is None else n
    out = []
    for i in range(count):
        at = T0 + draw(st.integers(0, 3 * 24 * 60)) * M
        inc = Incident.open(
            id=f"INC{i}", title="broken", caller="kim", impact=draw(st.integers(1, 3)),
            urgency=draw(st.integers(1, 3)), at=at, by=draw(st.sampled_from(PEOPLE)),
            assignment_group=draw(st.sampled_from((*GROUPS, None))),
            assignee=draw(st.sampled_from((*PEOPLE, None))),
            service=draw(st.sampled_from(("mail", "shop", None))),
        )  # fmt: skip
        for _ in range(draw(st.integers(0, 8))):
            allowed = [t for t in _TRIGGERS if t in inc.workflow.allowed(inc)]
            if not allowed:
                break
            at += draw(st.sampled_from((0, 1, 30, 240, 1500))) * M  # same-instant events too
            inc = _step(inc, draw(st.sampled_from(allowed)), at, draw)
        out.append(inc)
    return out


# an instant within, before or after the histories
instants = st.integers(-60, 6 * 24 * 60).map(lambda m: T0 + m * M)


def as_of(inc: Incident, at: datetime) -> Incident | None:
    """The brute force: the record's public timeline, read at ``at``."""
    seen = [snap for event, snap in inc.timeline() if event.at <= at]
    return seen[-1] if seen else None


def acknowledged(inc: Incident, at: datetime) -> datetime | None:
    for event, snap in inc.timeline():
        if event.at > at:
            return None
        if snap.assignee is not None or snap.state not in (IncidentState.NEW, "canceled"):
            return event.at
    return None


def _mean(values: list[timedelta]) -> timedelta | None:
    return sum(values, timedelta(0)) / len(values) if values else None


# --------------------------------------------------------------------------- brute force


@given(incidents(), instants)
def test_mttr_and_mtta_equal_a_recomputation_from_the_timelines(incs, at):
    snaps = [(i, s) for i in incs if (s := as_of(i, at)) is not None]
    live = [(i, s) for i, s in snaps if s.state != IncidentState.CANCELED]
    resolved = [s for _, s in live if s.state in DONE]
    walls = [s.resolved_at - s.opened_at for s in resolved]
    business = [OFFICE.elapsed(s.opened_at, s.resolved_at) for s in resolved]
    [row] = kpi.mttr(incs, at=at, calendar=OFFICE)
    assert (row.count, row.pending) == (len(resolved), len(live) - len(resolved))
    assert (row.mean, row.business_mean) == (_mean(walls), _mean(business))

    acks = [(s, acknowledged(i, at)) for i, s in live]
    done = [t - s.opened_at for s, t in acks if t is not None]
    [row] = kpi.mtta(incs, at=at)
    assert (row.count, row.pending, row.mean) == (len(done), len(acks) - len(done), _mean(done))
    assert row.business_mean is None  # no calendar given


@given(incidents(), instants)
def test_rates_and_reassignments_equal_a_recomputation(incs, at):
    snaps = [(i, s) for i in incs if (s := as_of(i, at)) is not None]
    live = [(i, s) for i, s in snaps if s.state != IncidentState.CANCELED]
    by_group: dict[Any, list[Incident]] = defaultdict(list)
    for _, s in live:
        by_group[s.assignment_group].append(s)
    fcr = {
        r.group: (r.count, r.hits)
        for r in kpi.first_contact_resolution(incs, at=at, by="assignment_group")
    }
    expected = {}
    for group, members in by_group.items():
        done = [s for s in members if s.state in DONE]
        if done:
            expected[group] = (len(done), sum(s.first_contact_resolution for s in done))
    assert {g: v for g, v in fcr.items() if v[0]} == expected

    ever = [
        (i, s) for i, s in live
        if any(e.at <= at and snap.state == IncidentState.RESOLVED for e, snap in i.timeline())
    ]  # fmt: skip
    [row] = kpi.reopen_rate(incs, at=at)
    assert (row.count, row.hits) == (len(ever), sum(s.reopen_count > 0 for _, s in ever))

    [row] = kpi.reassignment(incs, at=at)
    counts = Counter(s.reassignment_count for _, s in live)
    assert row.distribution == tuple(sorted(counts.items()))
    assert row.count == len(live)
    assert row.mean == (sum(k * n for k, n in counts.items()) / len(live) if live else None)


@given(incidents(), st.lists(instants, max_size=6))
def test_backlog_equals_a_count_at_each_instant(incs, points):
    rows = kpi.backlog(incs, instants=points, by="assignment_group")
    got = {(r.at, r.group): r.open for r in rows}
    expected: Counter[tuple[datetime, Any]] = Counter()
    for t in set(points):  # an instant given twice is one instant
        for i in incs:
            s = as_of(i, t)
            if s is not None and s.state in OPEN:
                expected[(t, s.assignment_group)] += 1
    assert got == dict(expected)
    total = kpi.backlog(incs, instants=points)
    assert [r.at for r in total] == sorted(set(points))
    assert [r.open for r in total] == [
        sum(v for (t, _), v in expected.items() if t == p) for p in sorted(set(points))
    ]


@given(incidents(), instants)
def test_ageing_buckets_the_open_records_by_age(incs, at):
    edges = (H, 24 * H, 3 * 24 * H)
    rows = kpi.ageing(incs, at=at, buckets=edges)
    ages = [at - s.opened_at for i in incs if (s := as_of(i, at)) is not None and s.state in OPEN]
    lows, highs = (timedelta(0), *edges), (*edges, None)
    assert [(r.low, r.high) for r in rows] == list(zip(lows, highs))
    assert [r.count for r in rows] == [
        sum(lo <= a and (hi is None or a < hi) for a in ages) for lo, hi in zip(lows, highs)
    ]


TARGETS = {Priority.P1: 2 * H, Priority.P2: 4 * H, Priority.P3: 8 * H, Priority.P4: 24 * H,
           Priority.P5: None}  # fmt: skip
SLAS = [
    SLADefinition.incident_response(TARGETS, OFFICE),
    SLADefinition.incident_resolution(TARGETS, OFFICE),
]


@given(incidents(), instants)
def test_sla_compliance_counts_the_completed_clocks_one_by_one(incs, at):
    rows = kpi.sla_compliance(incs, SLAS, at=at, by="priority")
    expected: Counter[tuple[str, Any, bool]] = Counter()
    for i in incs:
        s = as_of(i, at)
        if s is None:
            continue
        for d in SLAS:
            status = d.evaluate(i, at=at)
            if status.stage.value == "completed" and status.target is not None:
                expected[(d.name, s.priority, not status.breached)] += 1
    got = {(r.sla, r.group): (r.count, r.met) for r in rows}
    want = {
        (sla, p): (expected[(sla, p, True)] + expected[(sla, p, False)], expected[(sla, p, True)])
        for sla, p, _ in expected
    }
    assert got == want


# --------------------------------------------------------------------------- partitions


def _partials(incs: list[Incident], at: datetime) -> list[tuple[str, Any]]:
    return [
        ("mtta", lambda r: kpi.mtta_partial(r, at=at, by="assignment_group", calendar=OFFICE)),
        ("mttr", lambda r: kpi.mttr_partial(r, at=at, by="priority", calendar=OFFICE)),
        ("fcr", lambda r: kpi.first_contact_resolution_partial(r, at=at)),
        ("reopen", lambda r: kpi.reopen_rate_partial(r, at=at, by="service")),
        ("reassignment", lambda r: kpi.reassignment_partial(r, at=at, by="month")),
        ("ageing", lambda r: kpi.ageing_partial(r, at=at, by="assignment_group")),
        ("backlog", lambda r: kpi.backlog_partial(r, instants=[at - H, at], by="priority")),
        ("sla", lambda r: kpi.sla_compliance_partial(r, SLAS, at=at, by="assignment_group")),
        ("recurring", lambda r: kpi.top_recurring_partial(r, at=at, by="service", limit=2)),
    ]


@given(incidents(), instants, st.data())
def test_partials_of_any_partitioning_combine_to_the_whole(incs, at, data):
    k = data.draw(st.integers(1, 4))
    where = data.draw(st.lists(st.integers(0, k - 1), min_size=len(incs), max_size=len(incs)))
    parts = [[i for i, w in zip(incs, where) if w == j] for j in range(k)]
    for name, partial in _partials(incs, at):
        whole = partial(incs)
        combined = kpi.combine(partial(p) for p in parts)
        assert combined == whole, name
        assert kpi.finish(combined) == kpi.finish(whole), name


def test_the_kpi_is_the_finish_of_its_partial():
    incs = hand_built()
    at = T0 + 50 * H
    assert kpi.mttr(incs, at=at, by="priority") == kpi.finish(
        kpi.mttr_partial(incs, at=at, by="priority")
    )
    part = kpi.mtta_partial(incs, at=at)
    assert part + part == kpi.combine([part, part])
    assert kpi.finish(part + part)[0].mean == kpi.finish(part)[0].mean


# --------------------------------------------------------------------------- hand-built cases


def hand_built() -> list[Incident]:
    a = (Incident.open(id="INC1", title="Mail down", caller="mia", impact=1, urgency=2, at=T0,
                       by="desk", assignment_group="L1", service="mail")
         .assign(assignee="ann", at=T0 + 30 * M, by="ann")
         .resolve(code="solution_provided", notes="done", at=T0 + 2 * H, by="ann"))  # fmt: skip
    b = (Incident.open(id="INC2", title="VPN slow", caller="kim", impact=2, urgency=2, at=T0 + H,
                       by="desk", service="vpn")
         .start(at=T0 + 2 * H, by="bob")
         .resolve(code="solution_provided", notes="tuned", at=T0 + 5 * H, by="bob")
         .reopen(reason="slow again", at=T0 + 6 * H, by="kim"))  # fmt: skip
    c = Incident.open(
        id="INC3", title="dup", caller="kim", impact=3, urgency=3, at=T0 + H, by="desk"
    ).cancel(reason="duplicate", at=T0 + 2 * H, by="desk")
    return [a, b, c]


def test_a_reopened_incident_is_pending_until_resolved_again():
    incs = hand_built()
    [row] = kpi.mttr(incs, at=T0 + 10 * H)
    assert (row.count, row.pending, row.mean) == (1, 1, 2 * H)
    [row] = kpi.mttr(incs, at=T0 + 5 * H + M)  # before the reopen: two resolved
    assert (row.count, row.pending, row.mean) == (2, 0, 3 * H)
    [row] = kpi.reopen_rate(incs, at=T0 + 10 * H)
    assert (row.count, row.hits, row.rate) == (2, 1, 0.5)


def test_as_of_an_instant_before_every_opening_nothing_is_counted():
    [row] = kpi.mttr(hand_built(), at=T0 - M)
    assert (row.count, row.pending, row.mean, row.business_mean) == (0, 0, None, None)


def test_empty_input_gives_documented_rows_not_a_division_by_zero():
    assert kpi.mtta([], at=T0) == [
        kpi.DurationRow(group=None, count=0, pending=0, mean=None, business_mean=None)
    ]
    assert kpi.first_contact_resolution([], at=T0) == [
        kpi.RateRow(group=None, count=0, hits=0, rate=None)
    ]
    assert kpi.reassignment([], at=T0)[0].mean is None
    assert kpi.mttr([], at=T0, by="priority") == []
    assert kpi.backlog([], instants=[T0]) == [kpi.BacklogRow(at=T0, group=None, open=0)]
    assert kpi.sla_compliance([], SLAS, at=T0)[0].rate is None
    assert [r.count for r in kpi.ageing([], at=T0)] == [0] * 6
    assert kpi.top_recurring([], at=T0) == []
    assert kpi.change_success_rate([], at=T0)[0].rate is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: kpi.mttr(hand_built(), at=datetime(2025, 3, 3)), "naive"),
        (lambda: kpi.mttr(hand_built(), at="2025-03-03"), "must be a datetime"),
        (lambda: kpi.mttr([*hand_built(), changes()[0]], at=T0), "records of one kind"),
        (lambda: kpi.change_success_rate(hand_built(), at=T0), "over change records"),
        (lambda: kpi.first_contact_resolution(changes(), at=T0), "over incident records"),
        (lambda: kpi.mttr([1, 2], at=T0), "over records, got int"),
        (lambda: kpi.mttr(hand_built()[0], at=T0), "not one record"),
        (lambda: kpi.mttr(hand_built(), at=T0, by="colour"), "no field 'colour'"),
        (lambda: kpi.mttr(hand_built(), at=T0, by=3), "by must be"),
        (lambda: kpi.mttr(hand_built(), at=T0, calendar="office"), "BusinessCalendar"),
        (lambda: kpi.backlog(hand_built(), instants=T0), "collection of datetimes"),
        (lambda: kpi.backlog(hand_built(), instants=[datetime(2025, 3, 3)]), "naive"),
        (lambda: kpi.ageing(hand_built(), at=T0, buckets=[H, H]), "increasing"),
        (lambda: kpi.ageing(hand_built(), at=T0, buckets=[1, 2]), "timedeltas"),
        (lambda: kpi.top_recurring(hand_built(), at=T0, by=None), "groups by something"),
        (lambda: kpi.top_recurring(hand_built(), at=T0, limit=0), "limit"),
        (lambda: kpi.top_recurring(hand_built(), at=T0, window=-H), "window"),
        (lambda: kpi.sla_compliance(hand_built(), [SLAS[0], SLAS[0]], at=T0), "own name"),
        (lambda: kpi.sla_compliance(hand_built(), ["resolution"], at=T0), "SLADefinitions"),
        (lambda: kpi.combine([]), "at least one"),
        (
            lambda: kpi.combine([kpi.mtta_partial([], at=T0), kpi.mttr_partial([], at=T0)]),
            "cannot combine",
        ),
        (
            lambda: kpi.combine(
                [kpi.mtta_partial([], at=T0), kpi.mtta_partial([], at=T0, calendar=OFFICE)]
            ),
            "cannot combine",
        ),
        (lambda: kpi.finish("mtta"), "takes a Partial"),
        (lambda: kpi.series(T0, T0 + H, every="month"), "every is"),
        (lambda: kpi.series(T0, T0 + H, every=timedelta(0)), "positive"),
    ],
)
def test_bad_input_is_a_validation_error(call, match):
    with pytest.raises(ValidationError, match=match):
        call()


def test_groups_are_read_as_the_record_was_at_the_instant():
    inc = Incident.open(id="INC1", title="x", caller="kim", impact=2, urgency=2, at=T0, by="desk",
                        assignment_group="L1")  # fmt: skip
    inc = inc.assign(group="L2", at=T0 + H, by="desk")
    points = [T0 + 30 * M, T0 + 2 * H]
    rows = kpi.backlog([inc], instants=points, by="assignment_group")
    assert [(r.group, r.open) for r in rows] == [
        ("L1", 1), ("L2", 1),
    ]  # fmt: skip
    assert kpi.reassignment([inc], at=T0 + 30 * M, by="assignment_group")[0].group == "L1"
    # A function of the record may read its history: it sees the history up to the instant.
    events = kpi.reassignment([inc], at=T0 + 30 * M, by=lambda r: len(r.history))
    assert events[0].group == 1


def test_frames_hold_the_rows():
    pd = pytest.importorskip("pandas")
    incs = hand_built()
    rows = kpi.mttr(incs, at=T0 + 10 * H, by="service", calendar=OFFICE)
    frame = kpi.mttr(incs, at=T0 + 10 * H, by="service", calendar=OFFICE, frame=True)
    assert list(frame.columns) == ["group", "count", "pending", "mean", "business_mean"]
    assert frame["group"].tolist() == [r.group for r in rows]
    assert frame["mean"].tolist()[0] == pd.Timedelta(rows[0].mean)
    empty = kpi.backlog([], instants=[], by="service", frame=True)
    assert list(empty.columns) == ["at", "group", "open"]
    assert len(empty) == 0


def test_partials_travel_as_frames():
    pd = pytest.importorskip("pandas")

    incs = hand_built()
    at = T0 + 10 * H
    parts = [
        kpi.backlog_partial(p, instants=[T0 + H, at], by="service") for p in (incs[:1], incs[1:])
    ]
    frame = pd.concat([p.to_frame() for p in parts], ignore_index=True)
    assert kpi.Partial.from_frame(frame) == kpi.backlog_partial(
        incs, instants=[T0 + H, at], by="service"
    )
    with pytest.raises(ValidationError, match="no rows"):
        kpi.Partial.from_frame(frame.head(0))
    with pytest.raises(ValidationError, match=r"made by Partial\.to_frame"):
        kpi.Partial.from_frame(pd.DataFrame({"x": [1]}))


def test_top_recurring_counts_within_the_window_and_ranks_ties_by_key():
    incs = [
        Incident.open(id=f"INC{i}", title="x", caller="k", impact=3, urgency=3,
                      at=T0 + i * 24 * H, by="desk", ci=ci)
        for i, ci in enumerate(["db-1", "web-1", "db-1", "web-1", "app", None])
    ]  # fmt: skip
    at = T0 + 5 * 24 * H
    assert [(r.key, r.count) for r in kpi.top_recurring(incs, at=at, window=None)] == [
        ("db-1", 2), ("web-1", 2), ("app", 1),
    ]  # fmt: skip
    # Opened after at - 3 days: web-1's second and app's; INC5 has no CI.
    top = kpi.top_recurring(incs, at=at, window=3 * 24 * H, limit=2)
    assert [(r.key, r.count, r.first_seen, r.last_seen) for r in top] == [
        ("app", 1, T0 + 4 * 24 * H, T0 + 4 * 24 * H),
        ("web-1", 1, T0 + 3 * 24 * H, T0 + 3 * 24 * H),
    ]


def test_series_are_local_midnights_and_mondays_across_dst():
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2025, 3, 29, 12, tzinfo=berlin)
    days = kpi.series(start, datetime(2025, 4, 1, tzinfo=berlin))
    assert [d.isoformat() for d in days] == [
        "2025-03-30T00:00:00+01:00", "2025-03-31T00:00:00+02:00", "2025-04-01T00:00:00+02:00",
    ]  # fmt: skip
    assert days[1].astimezone(UTC) - days[0].astimezone(UTC) == timedelta(hours=23)
    weeks = kpi.series(start, datetime(2025, 4, 20, tzinfo=UTC), every="week")
    assert [w.strftime("%a %d") for w in weeks] == ["Mon 31", "Mon 07", "Mon 14"]
    assert kpi.series(T0, T0 + 2 * H, every=H) == [T0, T0 + H, T0 + 2 * H]


# --------------------------------------------------------------------------- changes


def changes() -> list[Change]:
    window = {"planned_start": T0 + 24 * H, "planned_end": T0 + 26 * H}
    technical = {"normal": [ApprovalLevel.any_of("tech", ["dan"], stage="assess")], "emergency": []}
    out = []
    for i, (kind, code) in enumerate(
        [("emergency", "successful"), ("normal", "backed_out"),
         ("normal", "successful_with_issues"), ("normal", None)]
    ):  # fmt: skip
        c = Change.open(id=f"CHG{i}", title="patch", requester="rita", at=T0, by="rita",
                        change_type=kind, backout_plan="restore", **window,
                        approvals=[*technical[kind], ApprovalLevel.any_of("cab", ["ann"])],
                        )  # fmt: skip
        c = c.submit(at=T0 + M, by="rita")
        if kind == "normal":
            c = c.approve(at=T0 + 2 * M, by="dan")
        c = c.approve(at=T0 + 3 * M, by="ann")
        if code is not None:
            c = c.implement(at=T0 + 24 * H, by="ivan")
            c = c.complete(code=code, notes="see log", at=T0 + 25 * H, by="ivan")
            c = c.close(outcome="done", lessons="test first", at=T0 + 48 * H, by="rita")
        out.append(c)
    return out


def test_change_kpis_agree_with_change_measures_and_read_the_past():
    chg = changes()
    later = T0 + 100 * H
    measures = change_measures(chg)
    [success] = kpi.change_success_rate(chg, at=later)
    [emergency] = kpi.emergency_change_ratio(chg, at=later)
    assert (success.count, success.rate) == (3, measures.success_rate)
    assert emergency.rate == measures.emergency_ratio == 0.25
    [before] = kpi.change_success_rate(chg, at=T0 + 30 * H)  # none reviewed yet
    assert (before.count, before.rate) == (0, None)
    by_type = kpi.change_success_rate(chg, at=later, by="change_type")
    assert [(r.group, r.hits, r.count) for r in by_type] == [("emergency", 1, 1), ("normal", 1, 2)]


# --------------------------------------------------------------------- the real log per partition


def test_dask_partitions_give_the_single_process_answers():
    dask = pytest.importorskip("dask", reason="dask is in the test extra")
    dd = pytest.importorskip("dask.dataframe", reason="dask is in the test extra")
    pd = pytest.importorskip("pandas")

    if not real.LOG.exists():
        pytest.skip(f"the bundled log is not at {real.LOG}")
    with real.zipfile.ZipFile(real.LOG) as archive, archive.open("incident_event_log.csv") as raw:
        log = pd.read_csv(raw, dtype=str, keep_default_na=False)
    whole_log = read_incident_log(real.LOG, zone="UTC")
    # Every partition reads with the whole log's matrix and workflow, as one desk would.
    workflow, matrix = whole_log.workflow, whole_log.report.matrix
    at = datetime(2016, 6, 1, tzinfo=UTC)
    points = kpi.series(datetime(2016, 3, 1, tzinfo=UTC), at, every="week")
    cal = BusinessCalendar.weekly({"mon-fri": "08:00-18:00"}, tz="Europe/Lisbon")

    def replayed(rows: pd.DataFrame) -> list[Incident]:
        text = rows.to_csv(index=False)
        found = read_incident_log(io.StringIO(text), zone="UTC", workflow=workflow, matrix=matrix)
        return list(found.incidents.values())

    def partials(records: list[Incident]) -> list[kpi.Partial]:
        return [
            kpi.mttr_partial(records, at=at, by="priority", calendar=cal),
            kpi.mtta_partial(records, at=at),
            kpi.reopen_rate_partial(records, at=at, by="assignment_group"),
            kpi.reassignment_partial(records, at=at),
            kpi.backlog_partial(records, instants=points),
            kpi.sla_compliance_partial(records, SLAS[1:], at=at, by="month"),
            kpi.top_recurring_partial(records, at=at, by="category", window=None),
        ]

    def per_partition(rows: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([p.to_frame() for p in partials(replayed(rows.reset_index()))])

    with dask.config.set({"dataframe.convert-string": False, "scheduler": "synchronous"}):
        ddf = dd.from_pandas(
            log.set_index("number"), npartitions=4
        )  # an incident's rows stay together
        meta = per_partition(log.head(0).set_index("number"))
        found = ddf.map_partitions(per_partition, meta=meta).compute()
    assert ddf.npartitions == 4
    whole = partials(list(whole_log.incidents.values()))
    assert whole[0].sums  # the real records were read
    for part in whole:
        frames = found[found["kpi"] == part.kpi]
        assert kpi.Partial.from_frame(frames) == part, part.kpi
        assert kpi.finish(kpi.Partial.from_frame(frames)) == kpi.finish(part), part.kpi


def test_a_random_order_of_partitions_does_not_change_the_answer():
    incs = hand_built()
    at = T0 + 10 * H
    parts = [kpi.mttr_partial([i], at=at, calendar=OFFICE) for i in incs]
    random.Random(7).shuffle(parts)
    assert kpi.finish(kpi.combine(parts)) == kpi.mttr(incs, at=at, calendar=OFFICE)
