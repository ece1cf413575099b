"""A two-minute tour: ``python -m itsmcore.demo``.

Business hours in Berlin around Easter, the ITIL priority matrix, one incident's life with
its SLA clock, and storing it in a SQLite file.
"""

from __future__ import annotations

import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from itsmcore import BusinessCalendar, Incident, Priority, PriorityMatrix, SLADefinition
from itsmcore.storage import SQLiteStore

BERLIN = ZoneInfo("Europe/Berlin")


def main() -> None:
    """Print the tour."""
    easter = [date(2025, 4, 18), date(2025, 4, 21)]  # Good Friday, Easter Monday
    office = BusinessCalendar.weekly(
        {"mon-fri": "08:00-12:00,13:00-17:00"}, tz="Europe/Berlin", holidays=easter
    )
    print("Business time")
    print(f"  calendar: {office!r}")
    thursday = datetime(2025, 4, 17, 15, 0, tzinfo=BERLIN)
    due = office.add(thursday, timedelta(hours=8))
    print(f"  Thu {thursday:%d %b %H:%M} + 8 business hours = {due:%a %d %b %H:%M}")
    dst = BusinessCalendar.always(tz="Europe/Berlin")
    day = dst.elapsed(datetime(2025, 3, 30, tzinfo=BERLIN), datetime(2025, 3, 31, tzinfo=BERLIN))
    print(f"  a 24x7 clock on 30 Mar 2025 (clocks go forward) counts {day}")

    print("\nPriority (impact x urgency)")
    print("  " + PriorityMatrix.itil_default().to_markdown().replace("\n", "\n  ").rstrip())

    print("\nAn incident")
    opened = datetime(2025, 4, 17, 16, 30, tzinfo=BERLIN)
    incident = Incident.open(
        id="INC0001",
        title="Payroll export fails",
        caller="mia",
        channel="phone",
        impact="2 - Medium",
        urgency="1 - High",
        at=opened,
        by="desk",
    )
    escalated = opened + timedelta(minutes=20)
    resolved = datetime(2025, 4, 22, 9, 30, tzinfo=BERLIN)
    incident = (
        incident.assign(group="service-desk", assignee="sam", at=opened, by="desk")
        .start(at=opened + timedelta(minutes=5), by="sam")
        .escalate(group="payroll-l2", reason="needs the vendor's tool", at=escalated, by="sam")
        .resolve(code="solution_provided", notes="re-ran the export", at=resolved, by="lee")
    )
    for event in incident.history:
        print(f"  {event.at.astimezone(BERLIN):%a %d %b %H:%M}  {event.type:<24} -> {event.state}")
    business = office.elapsed(incident.opened_at, resolved)
    print(f"  priority {incident.priority}, now at tier {incident.tier}")
    print(f"  resolved after {business} of business time ({resolved - opened} on the wall clock)")

    print("\nIts SLA clock (P2: resolve within 8 business hours)")
    hours = {Priority.P1: 4, Priority.P2: 8, Priority.P3: 24, Priority.P4: 40, Priority.P5: 80}
    targets = {p: timedelta(hours=h) for p, h in hours.items()}
    sla = SLADefinition.incident_resolution(targets, office)
    for when in (opened + timedelta(minutes=20), datetime(2025, 4, 22, 9, 0, tzinfo=BERLIN)):
        status = sla.evaluate(incident, at=when)
        print(
            f"  at {when:%a %H:%M}: {status.stage.value}, {status.business_elapsed} used, "
            f"due {status.due_at:%a %d %b %H:%M}"
        )
    final = sla.evaluate(incident, at=resolved)
    print(f"  finally: {final.stage.value}, breached: {'yes' if final.breached else 'no'}")

    print("\nStored in SQLite")
    with tempfile.TemporaryDirectory() as folder, SQLiteStore(Path(folder) / "desk.db") as store:
        with store.unit_of_work() as uow:
            uow.incidents.add(incident)
            uow.commit()
        with store.unit_of_work() as uow:
            found = uow.incidents.find(state="resolved", priority=[1, 2])
            print(f"  resolved P1/P2 incidents: {[i.id for i in found]}")
            print(f"  {len(uow.incidents.history('INC0001'))} events stored; reloaded equal: "
                  f"{found[0] == incident}")  # fmt: skip


if __name__ == "__main__":
    main()
