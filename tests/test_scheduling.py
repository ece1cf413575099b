"""Change conflicts and the next free slot: change.md's worked example, and brute forces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from itsmcore import Change, ValidationError
from itsmcore.scheduling import Conflict, ConflictKind, all_conflicts, conflicts, next_free_slot
from itsmcore.windows import Window

BERLIN = ZoneInfo("Europe/Berlin")
SATURDAYS = Window.weekly("sat", "22:00", "02:00", tz="Europe/Berlin", name="Saturday night")
FREEZE = Window.once(datetime(2025, 12, 15, tzinfo=BERLIN), datetime(2026, 1, 5, tzinfo=BERLIN),
                     name="year-end freeze")  # fmt: skip
ASKED = datetime(2025, 12, 10, 9, tzinfo=BERLIN)  # a Wednesday


def change(
    id: str = "CHG1",  # noqa: A002
    start: datetime | None = None,
    hours: float = 3,
    cis: tuple[str, ...] = ("db-01",),
    assignee: str | None = None,
    state: str = "new",
) -> Change:
    c = Change.open(
        id=id, title="Patch", requester="rita", at=ASKED, by="rita", cis=cis,
        backout_plan="restore", planned_start=start,
        planned_end=None if start is None else start + timedelta(hours=hours),
    )  # fmt: skip
    if assignee is not None:
        c = c.assign(group="dba", assignee=assignee, at=ASKED, by="rita")
    if state == "canceled":
        c = c.cancel(reason="dropped", at=ASKED, by="rita")
    return c


def local(slot: tuple[datetime, datetime] | None) -> tuple[str, str]:
    assert slot is not None
    return slot[0].astimezone(BERLIN).isoformat(), slot[1].astimezone(BERLIN).isoformat()


def test_the_worked_example_of_change_md_comes_out_as_written() -> None:
    wanted = change()
    nothing_booked = next_free_slot(wanted, after=ASKED, duration=timedelta(hours=3),
                                    maintenance=SATURDAYS, blackout=FREEZE)  # fmt: skip
    assert local(nothing_booked) == ("2025-12-13T22:00:00+01:00", "2025-12-14T01:00:00+01:00")
    holder = change("CHG0", datetime(2025, 12, 13, 22, tzinfo=BERLIN), hours=1.5)
    booked = next_free_slot(wanted, after=ASKED, duration=timedelta(hours=3),
                            maintenance=SATURDAYS, blackout=FREEZE, others=[holder])  # fmt: skip
    # 2 h 30 min left on the 13th; the 20th, 27th and 3 January are frozen.
    assert local(booked) == ("2026-01-10T22:00:00+01:00", "2026-01-11T01:00:00+01:00")


def test_each_kind_of_conflict_is_reported_with_what_it_clashes_with() -> None:
    at = datetime(2025, 12, 13, 21, tzinfo=BERLIN)  # starts an hour before the window
    mine = change("CHG1", at, hours=2, cis=("db-01", "app-01"), assignee="ivan")
    others = [
        change("CHG2", at + timedelta(hours=1), cis=("db-01",)),
        change("CHG3", at, cis=("db-02",)),  # db-01's replica: related
        change("CHG4", at, cis=("web-01",), assignee="ivan"),
        change("CHG5", at, cis=("db-01",), state="canceled"),  # canceled: no clash
        change("CHG6", at + timedelta(hours=2), cis=("db-01",)),  # starts as mine ends
    ]
    related = {"db-01": ["db-02"], "app-01": []}
    found = conflicts(mine, others, maintenance=SATURDAYS, blackout=FREEZE,
                      related=lambda ci: related.get(ci, []))  # fmt: skip
    kinds = sorted((c.kind.value, c.ci or "", c.other or "") for c in found)
    assert kinds == [
        ("assignee_busy", "", "CHG4"),
        ("outside_maintenance", "app-01", ""),
        ("outside_maintenance", "db-01", ""),
        ("related_ci", "db-02", "CHG3"),
        ("same_ci", "db-01", "CHG2"),
    ]
    same = next(c for c in found if c.kind is ConflictKind.SAME_CI)
    assert (same.start, same.end) == (at + timedelta(hours=1), at + timedelta(hours=2))
    frozen = change("CHG7", datetime(2025, 12, 20, 22, tzinfo=BERLIN), hours=3)
    (blackout,) = conflicts(frozen, maintenance=SATURDAYS, blackout=FREEZE)
    assert (blackout.kind, blackout.window) == (ConflictKind.IN_BLACKOUT, "year-end freeze")


def test_windows_may_be_given_per_ci() -> None:
    at = datetime(2025, 12, 13, 22, tzinfo=BERLIN)
    sundays = Window.weekly("sun", "06:00", "10:00", tz="Europe/Berlin", name="Sunday morning")
    per_ci = {"db-01": SATURDAYS, "*": sundays}
    ok = change("CHG1", at, hours=3, cis=("db-01",))
    assert conflicts(ok, maintenance=per_ci) == []
    (wrong,) = conflicts(change("CHG2", at, hours=3, cis=("web-01",)), maintenance=per_ci)
    assert (wrong.kind, wrong.ci, wrong.window) == (
        ConflictKind.OUTSIDE_MAINTENANCE, "web-01", "Sunday morning",
    )  # fmt: skip
    both = change("CHG3", cis=("db-01", "web-01"))
    assert next_free_slot(both, after=ASKED, duration=timedelta(hours=1), maintenance=per_ci,
                          horizon=timedelta(days=60)) is None  # the windows never meet  # fmt: skip


# --------------------------------------------------------------------------- brute forces

slots = st.integers(0, 14 * 24 * 4 - 1)  # quarter hours over two weeks
BASE = datetime(2025, 11, 3, tzinfo=UTC)


# A schedule as plain specs (start quarter, length in quarters, CIs, assignee): the
# changes are built in the test, so a failing example prints as a few numbers.
specs = st.lists(
    st.tuples(slots, st.integers(1, 24), st.sets(st.sampled_from("abcd"), max_size=2),
              st.sampled_from([None, "ivan", "ida"])),
    max_size=25,
)  # fmt: skip


def build(schedule: list[tuple[int, int, set[str], str | None]]) -> list[Change]:
    return [
        change(f"C{k:02d}", BASE + timedelta(minutes=15 * q), hours=n / 4,
               cis=tuple(sorted(cis)), assignee=who)
        for k, (q, n, cis, who) in enumerate(schedule)
    ]  # fmt: skip


def _key(c: Conflict) -> tuple[str, str, str, str]:
    return (c.kind.value, c.change, c.ci or "", c.other or "")


@given(spec=specs)
def test_the_sweep_finds_exactly_what_comparing_every_pair_finds(
    spec: list[tuple[int, int, set[str], str | None]],
) -> None:
    schedule = build(spec)
    near = {"a": ["b"], "b": ["a"], "c": [], "d": []}
    related = near.__getitem__
    swept = all_conflicts(schedule, maintenance=SATURDAYS, related=related)
    pairwise = [
        conflict
        for c in schedule
        for conflict in conflicts(c, schedule, maintenance=SATURDAYS, related=related)
    ]
    assert sorted(map(_key, swept)) == sorted(map(_key, pairwise))


@given(spec=specs, cis=st.sets(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2),
       quarters=st.integers(1, 12), who=st.sampled_from([None, "ivan"]))  # fmt: skip
def test_the_next_free_slot_is_free_and_nothing_earlier_is(
    spec: list[tuple[int, int, set[str], str | None]],
    cis: set[str],
    quarters: int,
    who: str | None,
) -> None:
    schedule = build(spec)
    length = timedelta(minutes=15 * quarters)
    wanted = change("WANT", cis=tuple(sorted(cis)), assignee=who)
    window = Window.weekly("sat", "20:00", "04:00", tz="Europe/Berlin") | Window.weekly(
        "wed", "12:00", "14:00", tz="Europe/Berlin"
    )
    slot = next_free_slot(wanted, after=BASE, duration=length, maintenance=window,
                          others=schedule, horizon=timedelta(days=21))  # fmt: skip

    def fits(start: datetime) -> bool:
        moved = wanted.reschedule(planned_start=start, planned_end=start + length, at=ASKED,
                                  by="rita")  # fmt: skip
        return not conflicts(moved, schedule, maintenance=window)

    candidates = [BASE + timedelta(minutes=15 * q) for q in range(21 * 24 * 4)]
    first = next((s for s in candidates if s + length <= BASE + timedelta(days=21) and fits(s)),
                 None)  # fmt: skip
    assert (slot[0] if slot else None) == first
    if slot is not None:
        assert slot[1] - slot[0] == length


def test_slot_questions_are_checked() -> None:
    with pytest.raises(ValidationError, match="no planned window"):
        next_free_slot(change(), after=ASKED, maintenance=SATURDAYS)
    with pytest.raises(ValidationError, match="positive duration"):
        next_free_slot(change(), after=ASKED, maintenance=SATURDAYS, duration=timedelta(0))
    with pytest.raises(ValidationError, match="no planned window"):
        conflicts(change())
