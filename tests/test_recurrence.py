"""Proactive problem management: recurring incidents found in noise, with their cost.

The planted signal is seed 001: 52 weekly after-hours restarts of one application hidden
among a year of 5,000 random incidents over 300 CIs. Random generators have fixed seeds, so
every run sees the same data.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from itsmcore import BusinessCalendar, Incident, ValidationError
from itsmcore.recurrence import Billing, Candidate, Phase, detect_recurring, normalise

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = datetime(2025, 1, 6, tzinfo=BERLIN)  # wall-clock steps: every Tuesday at 18:00
START = datetime(2025, 1, 6, tzinfo=UTC)  # exact steps: random times never land in a gap
YEAR = 365 * 86_400
OFFICE = BusinessCalendar.weekly({"mon-fri": "08:00-17:00"}, tz="Europe/Berlin")


def incident(
    n: str,
    at: datetime,
    *,
    ci: str | None = None,
    worked: timedelta | None = None,
    title: str = "something broke",
    category: str | None = None,
    service: str | None = None,
) -> Incident:
    inc = Incident.open(
        id=n, title=title, caller="caller", impact=2, urgency=2, at=at, by="desk", ci=ci,
        category=category, service=service,
    )  # fmt: skip
    if worked is None:
        return inc
    return inc.resolve(code="solution_provided", notes="done", at=at + worked, by="desk")


def noise(seed: int, n: int = 5_000, cis: int = 300) -> list[Incident]:
    """A year of incidents at random times on random CIs, each worked 5 minutes to 10 hours."""
    rnd = random.Random(seed)
    return [
        incident(
            f"N{k}",
            START + timedelta(seconds=rnd.randrange(YEAR)),
            ci=f"CI{rnd.randrange(cis):03d}",
            worked=timedelta(minutes=rnd.randrange(5, 600)),
        )
        for k in range(n)
    ]


def restarts(seed: int, weeks: int = 52) -> list[Incident]:
    """Every Tuesday between 18:00 and 20:30 Berlin time, 20-55 minutes to restart the app."""
    rnd = random.Random(seed)
    return [
        incident(
            f"R{w}",
            MONDAY + timedelta(days=7 * w + 1, hours=18, minutes=rnd.randrange(150)),
            ci="app-billing",
            worked=timedelta(minutes=rnd.randrange(20, 55)),
            title=f"Restart billing app #{4000 + w}",
        )
        for w in range(weeks)
    ]


def test_the_weekly_after_hours_restart_stands_out_of_a_year_of_noise() -> None:
    found = detect_recurring(noise(1) + restarts(2), by="ci", calendar=OFFICE)
    top = found[0]
    assert top.key == "app-billing"
    assert top.count == 52
    assert top.period == timedelta(days=7)
    assert top.phase == Phase(weekday=1, start_hour=18, end_hour=21)
    assert str(top.phase) == "Tuesday 18:00-21:00"
    assert top.periodic_share == 1.0
    assert top.outside_hours == 1.0
    # Each restart takes under an hour and bills the minimum hour: 52 hours a year.
    assert 51 <= top.billed_hours_per_year <= 53
    assert 51 <= top.per_year <= 53
    assert top.cost_per_year == pytest.approx(top.billed_hours_per_year, abs=0.05)  # rate 1
    assert all(c.period is None for c in found[1:])


@pytest.mark.parametrize("seed", range(10))
def test_pure_noise_yields_no_candidate_and_no_pattern(seed: int) -> None:
    assert detect_recurring(noise(100 + seed), by="ci", calendar=OFFICE) == []


def test_the_noise_stays_well_below_the_threshold_it_cannot_reach() -> None:
    scores = [
        c.score
        for seed in range(10)
        for c in detect_recurring(noise(100 + seed), min_score=-1e9, min_pattern_score=1e9)
    ]
    assert len(scores) > 2_000
    assert max(scores) < 2.5  # the default threshold is 3


def test_the_planted_group_is_found_by_its_normalised_short_description_too() -> None:
    found = detect_recurring(noise(3) + restarts(4), by="title", calendar=OFFICE)
    assert found[0].key == "restart billing app"
    assert [c.key for c in found[1:]] == ["something broke"]  # every noise incident's title
    assert found[0].period == timedelta(days=7)
    assert normalise("Restart APP-X #4711") == normalise("restart app-x #12") == "restart app x"
    assert normalise("  Drucker läuft nicht (Raum 3.14)") == "drucker läuft nicht raum"
    assert normalise("ОШИБКА_42: диск") == "ошибка диск"


def test_a_nightly_job_failure_is_a_daily_pattern_without_a_weekday() -> None:
    rnd = random.Random(5)
    nightly = [
        incident(f"J{d}", MONDAY + timedelta(days=d, hours=2, minutes=rnd.randrange(60)),
                 ci="batch", worked=timedelta(minutes=90))
        for d in range(60)
    ]  # fmt: skip
    (found,) = detect_recurring(nightly + noise(6, n=500, cis=50), calendar=OFFICE)
    assert (found.key, found.period, str(found.phase)) == ("batch", timedelta(days=1),
                                                            "02:00-05:00")  # fmt: skip
    assert found.phase is not None
    assert found.phase.weekday is None
    assert found.billed_hours_per_year == pytest.approx(2 * 365, rel=0.02)  # 90 min bills 2 h


def test_a_weekly_band_may_run_past_midnight() -> None:
    late = [
        incident(f"S{w}", MONDAY + timedelta(days=7 * w + 6, hours=23, minutes=30 + w % 4 * 20),
                 ci="backup")
        for w in range(20)
    ]  # fmt: skip
    (found,) = detect_recurring(late, tz="Europe/Berlin")  # 23:30, 23:50, 00:10, 00:30
    assert found.phase == Phase(weekday=6, start_hour=23, end_hour=26)
    assert str(found.phase) == "Sunday 23:00-02:00"


def test_the_phase_is_read_in_the_calendar_zone_or_the_given_one() -> None:
    tuesday_evenings = restarts(7, weeks=30)
    (berlin,) = detect_recurring(tuesday_evenings, calendar=OFFICE)
    (tokyo,) = detect_recurring(tuesday_evenings, calendar=OFFICE, tz="Asia/Tokyo")
    (utc,) = detect_recurring(tuesday_evenings)
    assert str(berlin.phase) == "Tuesday 18:00-21:00"
    # 18:00 in Berlin is 02:00 (winter) or 01:00 (summer) the next day in Tokyo.
    assert tokyo.phase is not None
    assert (tokyo.phase.weekday, tokyo.phase.start_hour) in {(2, 1), (2, 2)}
    assert utc.phase is not None
    assert utc.phase.weekday == 1
    assert utc.outside_hours is None  # no calendar: no business hours to be outside of


def test_billing_counts_whole_units_with_a_minimum_and_a_rate() -> None:
    at = datetime(2025, 1, 7, 18, tzinfo=UTC)
    billing = Billing(minimum=timedelta(hours=1), unit=timedelta(minutes=30), rate=80.0)
    assert billing.hours(incident("A", at, worked=timedelta(minutes=10))) == 1.0
    assert billing.hours(incident("B", at, worked=timedelta(minutes=61))) == 1.5
    assert billing.hours(incident("C", at, worked=timedelta(hours=2))) == 2.0
    assert billing.hours(incident("D", at)) == 1.0  # still open: the minimum
    assert Billing().hours(incident("E", at, worked=timedelta(minutes=61))) == 2.0
    (found,) = detect_recurring(restarts(8), billing=billing)
    assert found.cost_per_year == pytest.approx(found.billed_hours_per_year * 80.0, rel=1e-3)
    (priced,) = detect_recurring(restarts(8), cost=lambda _inc: 250.0)
    assert priced.cost_per_year == pytest.approx(250.0 * priced.per_year, rel=1e-3)
    with pytest.raises(ValidationError, match="positive unit"):
        Billing(unit=timedelta(0))


def test_the_monthly_counts_cover_every_month_and_the_trend_follows_them() -> None:
    rising = [
        incident(f"M{m}-{k}", MONDAY + timedelta(days=30 * m + k), ci="db01")
        for m in (0, 2, 3)
        for k in range(m + 2)
    ]
    (found,) = detect_recurring(rising + noise(9, n=300, cis=100), min_score=2)
    assert [month for month, _ in found.monthly] == ["2025-01", "2025-02", "2025-03", "2025-04"]
    assert [count for _, count in found.monthly] == [2, 0, 4, 5]
    assert found.trend > 1.0
    assert (found.first_seen, found.count) == (MONDAY, 11)


def test_groups_by_the_named_fields_or_a_function_within_a_window() -> None:
    data = [
        incident(f"I{k}", MONDAY + timedelta(days=k), ci=f"ci{k % 2}",
                 category="network" if k % 3 else "email", service="mail")
        for k in range(30)
    ]  # fmt: skip
    assert {c.key for c in detect_recurring(data, by="category", min_score=-9)} == {
        "network", "email",
    }  # fmt: skip
    by_service = detect_recurring(data, by="service", min_score=-9)
    assert [(c.key, c.count) for c in by_service] == [("mail", 30)]
    weekday = detect_recurring(data, by=lambda i: i.opened_at.weekday() < 5, min_score=-9)
    weekdays = sum(i.opened_at.weekday() < 5 for i in data)
    assert sorted((c.key, c.count) for c in weekday) == [(False, 30 - weekdays), (True, weekdays)]
    recent = detect_recurring(data, by="ci", window=timedelta(days=9), min_score=-9)
    assert sorted(c.count for c in recent) == [5, 5]  # the last ten days
    assert detect_recurring([], by="ci") == []


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"by": "colour"}, "group by one of ci, service"),
        ({"min_count": 1}, "min_count must be a whole number 2 or more"),
        ({"min_count": True}, "min_count"),
        ({"band_hours": 0}, "band_hours must be a whole number 1 to 24"),
        ({"window": timedelta(0)}, "window must be a positive timedelta"),
        ({"tz": "Mars/Olympus"}, "Mars/Olympus"),
    ],
)
def test_bad_knobs_are_refused_by_name(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        detect_recurring(restarts(1, weeks=3), **knobs)  # type: ignore[arg-type]


def test_a_candidate_opens_its_problem_with_every_incident_linked() -> None:
    found: Candidate = detect_recurring(noise(10) + restarts(11), calendar=OFFICE)[0]
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    problem, linked = found.to_problem(id="PRB0000001", at=at, by="analyst")
    assert problem.title == "Recurring incidents: app-billing"
    assert "52 incidents" in problem.description
    assert "Tuesday 18:00-21:00 every 7 day(s)" in problem.description
    assert (problem.symptom, problem.ci, problem.service) == ("Restart billing app #4000",
                                                             "app-billing", None)  # fmt: skip
    assert sorted(problem.incidents) == sorted(i.id for i in found.incidents)
    assert all(i.problems == ("PRB0000001",) for i in linked)


def test_a_candidate_of_closed_incidents_still_becomes_a_problem_with_all_of_them() -> None:
    closed = [i.close(at=i.resolved_at + timedelta(days=2), by="desk") for i in restarts(12)]
    (found,) = detect_recurring(closed)
    problem, linked = found.to_problem(id="PRB9", at=datetime(2026, 2, 1, tzinfo=UTC), by="pm")
    assert len(problem.incidents) == 52
    assert linked == closed  # read-only: returned as they were


def test_naive_times_and_unhashable_keys_are_refused_by_name() -> None:
    class Naive:
        opened_at = datetime(2025, 1, 7, 18)  # naive: the bad input under test
        ci = "app"

    with pytest.raises(ValidationError, match="aware datetime"):
        detect_recurring([Naive()] * 3)
    with pytest.raises(ValidationError, match="hashable"):
        detect_recurring(restarts(1, weeks=3), by=lambda i: [i.ci])
    with pytest.raises(ValidationError, match="timedelta"):
        Billing(minimum=60)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="rate"):
        Billing(rate=float("nan"))
