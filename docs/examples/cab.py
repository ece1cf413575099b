"""A normal change from request to review: risk, a conflict, the next free slot, the CAB.

Run it: ``python docs/examples/cab.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from itsmcore import Change, SegregationOfDutiesError
from itsmcore.change import ApprovalLevel, RiskModel, RiskRule, change_measures
from itsmcore.scheduling import conflicts, next_free_slot
from itsmcore.windows import Window

BERLIN = ZoneInfo("Europe/Berlin")
MAINTENANCE = Window.weekly("sat", "22:00", "02:00", tz="Europe/Berlin", name="Saturday night")
FREEZE = Window.yearly((12, 15), (1, 5), tz="Europe/Berlin", name="year-end freeze")
RISK = RiskModel(
    questions={
        "users affected": {"none": 0, "one team": 1, "everyone": 4},
        "done before": {"often": 0, "once": 1, "never": 3},
    },
    thresholds=((0, "low"), (3, "moderate"), (6, "high")),
    rules=(RiskRule("touches the billing database", "high", lambda c: "db-01" in c.cis),),
)


def at(day: int, hour: int, minute: int = 0, month: int = 12, year: int = 2025) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def show(when: datetime) -> str:
    return when.astimezone(BERLIN).strftime("%a %d %b %Y %H:%M")


def main() -> None:
    booked = Change.open(
        id="CHG0000041", title="Rotate db-01 certificates", requester="ops", at=at(1, 9),
        by="ops", cis=["db-01"], backout_plan="old certificates", planned_start=at(13, 22),
        planned_end=at(13, 23, 30),
    )  # fmt: skip
    change = Change.open(
        id="CHG0000042", title="Upgrade PostgreSQL on db-01 to 16.4", requester="rita",
        implementer="ivan", at=at(10, 9), by="rita", cis=["db-01"], services=["billing"],
        backout_plan="restore the pre-upgrade snapshot", backout_tested=True,
        approvals=[
            ApprovalLevel.any_of("technical", ["dora", "dan"], stage="assess"),
            ApprovalLevel("cab", ("ann", "bob", "cid"), required=2),
        ],
        planned_start=at(13, 22), planned_end=at(14, 1),
    )  # fmt: skip
    answers = {"users affected": "everyone", "done before": "once"}
    change = change.assess_risk(model=RISK, answers=answers, at=at(10, 9, 5), by="rita")
    print(f"{change.id}: {change.title}")
    print(f"  risk {change.risk} (score {change.risk_score:g}; decided by {change.risk_reason})")

    for clash in conflicts(change, [booked], maintenance=MAINTENANCE, blackout=FREEZE):
        span = f"{show(clash.start)} to {show(clash.end)}" if clash.start and clash.end else ""
        print(f"  conflict: {clash.kind} on {clash.ci} with {clash.other}, {span}")
    slot = next_free_slot(change, after=at(10, 9), maintenance=MAINTENANCE, blackout=FREEZE,
                          others=[booked])  # fmt: skip
    if slot is None:
        raise SystemExit("no free slot within a year")
    print(f"  next free slot: {show(slot[0])} to {show(slot[1])}")
    change = change.reschedule(planned_start=slot[0], planned_end=slot[1], at=at(10, 9, 10),
                               by="rita", reason="db-01 is taken on the 13th")  # fmt: skip

    change = change.submit(at=at(10, 9, 15), by="rita")
    change = change.approve(comment="plan reviewed", at=at(10, 11), by="dora")
    try:
        change.approve(at=at(10, 11, 5), by="rita")
    except SegregationOfDutiesError as refused:
        print(f"  refused: {refused}")
    change = change.approve(at=at(11, 14), by="ann")
    change = change.reject(reason="no load test", at=at(11, 14, 10), by="bob")
    change = change.approve(comment="load test can follow", at=at(11, 14, 20), by="cid")
    print(f"  CAB: {', '.join(f'{v.approver} {v.decision}' for v in change.votes[1:])}"
          f" -> {change.state}")  # fmt: skip

    change = change.implement(at=slot[0] + timedelta(minutes=5), by="ivan")
    change = change.complete(code="successful", at=slot[0] + timedelta(hours=2), by="ivan")
    change = change.close(outcome="upgraded; 4 minutes of read-only mode",
                          lessons="announce read-only mode", at=at(12, 10, month=1, year=2026),
                          by="rita")  # fmt: skip
    print(f"  {change.state} {change.close_code}: {change.review_outcome}")
    steps = ", ".join(e.type.split(".")[1] for e in change.history)
    print(f"  {len(change.history)} events: {steps}")
    measures = change_measures([change, booked])
    print(f"  approval took {measures.mean_approval_time}; lead time {measures.mean_lead_time}")


if __name__ == "__main__":
    main()
