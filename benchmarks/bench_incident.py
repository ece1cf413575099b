"""Incident lifecycle throughput: itsmcore's engine against a hand-written baseline.

Runs open -> assign -> start -> hold -> resume -> resolve -> close for N incidents, then
rebuilds each from its history, with itsmcore and with a plain ``@dataclass`` + ``if``
implementation of the same lifecycle that records the same events (the code a developer
would write by hand). Reports lifecycles/s and events/s and the ratio.

    python benchmarks/bench_incident.py            # 100k incidents
    python benchmarks/bench_incident.py --n 10000  # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from itsmcore import Incident
from timing import best_of

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
STEP = timedelta(minutes=7)

# --------------------------------------------------------------------------- the baseline


class BadMoveError(Exception):
    pass


@dataclass(frozen=True)
class PlainEvent:
    type: str
    at: datetime
    by: str
    state: str
    data: dict[str, Any]


@dataclass
class PlainIncident:
    id: str
    title: str
    caller: str
    impact: int
    urgency: int
    priority: int
    state: str = "new"
    hold_reason: str | None = None
    group: str | None = None
    assignee: str | None = None
    reassignments: int = 0
    resolved_at: datetime | None = None
    code: str | None = None
    notes: str | None = None
    closed_at: datetime | None = None
    history: list[PlainEvent] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        key: str,
        title: str,
        caller: str,
        impact: int,
        urgency: int,
        at: datetime,
        by: str,
    ) -> PlainIncident:
        if at.tzinfo is None:
            raise ValueError("naive")
        inc = cls(key, title, caller, impact, urgency, min(5, impact + urgency - 1))
        inc.history.append(PlainEvent("opened", at, by, "new", {"title": title}))
        return inc

    def _event(self, kind: str, at: datetime, by: str, state: str, **data: Any) -> None:
        if at.tzinfo is None or at < self.history[-1].at:
            raise ValueError("bad time")
        self.state = state
        self.history.append(PlainEvent(kind, at, by, state, data))

    def assign(self, group: str, assignee: str | None, at: datetime, by: str) -> None:
        if self.state not in ("new", "in_progress", "on_hold"):
            raise BadMoveError(self.state)
        if self.group is not None and group != self.group:
            self.reassignments += 1
        self.group, self.assignee = group, assignee
        self._event("assigned", at, by, self.state, group=group, assignee=assignee)

    def start(self, at: datetime, by: str) -> None:
        if self.state != "new":
            raise BadMoveError(self.state)
        self._event("started", at, by, "in_progress")

    def hold(self, reason: str, at: datetime, by: str) -> None:
        if self.state not in ("new", "in_progress"):
            raise BadMoveError(self.state)
        self.hold_reason = reason
        self._event("held", at, by, "on_hold", reason=reason)

    def resume(self, at: datetime, by: str) -> None:
        if self.state != "on_hold":
            raise BadMoveError(self.state)
        self.hold_reason = None
        self._event("resumed", at, by, "in_progress")

    def resolve(self, code: str, notes: str, at: datetime, by: str) -> None:
        if self.state not in ("new", "in_progress"):
            raise BadMoveError(self.state)
        if not code or not notes:
            raise ValueError("code and notes")
        self.code, self.notes, self.resolved_at = code, notes, at
        self._event("resolved", at, by, "resolved", code=code, notes=notes)

    def close(self, at: datetime, by: str) -> None:
        if self.state != "resolved":
            raise BadMoveError(self.state)
        self.closed_at = at
        self._event("closed", at, by, "closed")

    @classmethod
    def replay(cls, events: list[PlainEvent]) -> PlainIncident:
        first = events[0]
        inc = cls("?", first.data["title"], "?", 2, 2, 3)
        inc.history = [first]
        for e in events[1:]:
            inc.state = e.state
            inc.history.append(e)
            if e.type == "assigned":
                inc.group, inc.assignee = e.data["group"], e.data["assignee"]
            elif e.type == "held":
                inc.hold_reason = e.data["reason"]
            elif e.type == "resumed":
                inc.hold_reason = None
            elif e.type == "resolved":
                inc.code, inc.notes, inc.resolved_at = e.data["code"], e.data["notes"], e.at
            elif e.type == "closed":
                inc.closed_at = e.at
        return inc


# --------------------------------------------------------------------------- the runs


def lifecycle_itsmcore(n: int) -> list[Incident]:
    out = []
    for k in range(n):
        t = T0 + timedelta(seconds=k)
        inc = Incident.open(
            id=f"INC{k}", title="Printer jam", caller="mia", impact=2, urgency=2, at=t, by="desk"
        )
        inc = inc.assign(group="l1", assignee="sam", at=t + STEP, by="desk")
        inc = inc.start(at=t + 2 * STEP, by="sam")
        inc = inc.hold(reason="awaiting_caller", at=t + 3 * STEP, by="sam")
        inc = inc.resume(at=t + 4 * STEP, by="sam")
        inc = inc.resolve(code="solution_provided", notes="cleared", at=t + 5 * STEP, by="sam")
        out.append(inc.close(at=t + 6 * STEP, by="mia"))
    return out


def lifecycle_plain(n: int) -> list[PlainIncident]:
    out = []
    for k in range(n):
        t = T0 + timedelta(seconds=k)
        inc = PlainIncident.open(f"INC{k}", "Printer jam", "mia", 2, 2, t, "desk")
        inc.assign("l1", "sam", t + STEP, "desk")
        inc.start(t + 2 * STEP, "sam")
        inc.hold("awaiting_caller", t + 3 * STEP, "sam")
        inc.resume(t + 4 * STEP, "sam")
        inc.resolve("solution_provided", "cleared", t + 5 * STEP, "sam")
        inc.close(t + 6 * STEP, "mia")
        out.append(inc)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    n = args.n

    t_lib, records = best_of(args.repeats, lambda: lifecycle_itsmcore(n))
    t_plain, plain = best_of(args.repeats, lambda: lifecycle_plain(n))
    t_lib_replay, rebuilt = best_of(
        args.repeats, lambda: [Incident.replay(r.history) for r in records]
    )
    t_plain_replay, _ = best_of(
        args.repeats, lambda: [PlainIncident.replay(p.history) for p in plain]
    )
    assert rebuilt == records, "replay must rebuild equal records"
    events = n * 7
    rows = {
        "lifecycle": (t_lib, t_plain),
        "replay": (t_lib_replay, t_plain_replay),
    }
    print(f"{n:,} incidents x 7 events, best of {args.repeats}, Python {platform.python_version()}")
    print(
        "| run | itsmcore lifecycles/s | plain dataclass+if lifecycles/s "
        "| itsmcore events/s | cost ratio (itsmcore / plain time) |"
    )
    print("|---|---|---|---|---|")
    results = {}
    for name, (lib, base) in rows.items():
        results[name] = {
            "itsmcore_per_s": n / lib,
            "plain_per_s": n / base,
            "itsmcore_events_per_s": events / lib,
            "ratio": lib / base,
        }
        print(
            f"| {name} | {n / lib:,.0f} | {n / base:,.0f} "
            f"| {events / lib:,.0f} | {lib / base:.2f}x |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:  # noqa: PTH123
            json.dump({"n": n, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
