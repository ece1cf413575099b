"""The floor of importing the bundled log in pure Python: the same result, least Python.

A throwaway measurement, not library code. It reads ``incident_event_log.zip`` knowing its
columns, assumes every row is valid (no checks but the ones that decide events), and builds
the same events and ``Incident`` records ``read_incident_log`` builds — each event made by
setting its slots, each record folded in place by the practice's own appliers — then times
it beside ``pandas.read_csv`` and ``read_incident_log`` in one run, alternating, best of N,
wall and CPU. ``--check`` first asserts the result equals the library's (incidents and
sources).

Two floors: one splits the text with ``str.split`` (pure Python), the other tokenizes it
with pyarrow's C reader and factorizes each column (each distinct time and each distinct
combination of the descriptive columns read once), as ``read_incident_log`` does when
pyarrow is installed; both then build the incidents with the same loop.

    python benchmarks/floor_import.py --repeats 5 --check --phases
"""

# A measurement written as tight as it goes: the engine's private fast paths, loops kept whole.
# ruff: noqa: SLF001, PLW2901, PLR1730, PLR0912, N806, B905

from __future__ import annotations

import argparse
import gc
import platform
import time
import zipfile
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from itertools import compress, pairwise
from operator import ne
from typing import Any

import attrs
import pandas as pd

from bench_import import LOG
from itsmcore.capabilities import FieldChange
from itsmcore.incident import (
    Incident,
    IncidentAssigned,
    IncidentCanceled,
    IncidentClosed,
    IncidentCommented,
    IncidentHeld,
    IncidentOpened,
    IncidentReopened,
    IncidentReprioritized,
    IncidentResolved,
    IncidentResumed,
    IncidentStarted,
    IncidentUpdated,
)
from itsmcore.io import SERVICENOW, import_workflow, infer_matrix, read_incident_log
from itsmcore.priority import Impact, Priority, Urgency

NOTE = "imported: an update of the export"
STATES = {k: (None if v is None else str(v)) for k, v in SERVICENOW.states.items()}
REASONS = {k: str(v) for k, v in SERVICENOW.hold_reasons.items()}


def maker(cls: type) -> Any:
    """``make(*values)``: an event of ``cls`` from its fields' values in order, slots set."""
    names = [f.name for f in attrs.fields(cls)]
    setters = [getattr(cls, n).__set__ for n in names]
    new = object.__new__
    args = ", ".join(names)
    body = "".join(f"    s{i}(e, {n})\n" for i, n in enumerate(names))
    source = f"def make({args}):\n    e = new(cls)\n{body}    return e\n"
    ns: dict[str, Any] = {"new": new, "cls": cls} | {f"s{i}": s for i, s in enumerate(setters)}
    exec(source, ns)  # noqa: S102 - field names are identifiers
    return ns["make"]


TICKS: list[tuple[str, float]] = []


def tick(name: str) -> None:
    TICKS.append((name, time.process_time()))


LEVELS = {"1 - High": Impact.HIGH, "2 - Medium": Impact.MEDIUM, "3 - Low": Impact.LOW}
URGENCIES = {"1 - High": Urgency.HIGH, "2 - Medium": Urgency.MEDIUM, "3 - Low": Urgency.LOW}
PRIORITIES = {f"{int(p)} - {p.label}": p for p in Priority}


def day_first(value: str, days: dict[str, Any], clocks: dict[str, Any]) -> datetime:
    """A day-first time, its day and its clock each read once."""
    day, _, clock = value.partition(" ")
    d = days.get(day)
    if d is None:
        dd, mm, yy = day.split("/")
        d = days[day] = (int(yy), int(mm), int(dd))
    c = clocks.get(clock)
    if c is None:
        hh, mi = clock.split(":")
        c = clocks[clock] = (int(hh), int(mi))
    return datetime(*d, *c, tzinfo=UTC)


def python_columns() -> tuple[Any, ...]:
    """The columns the build needs, the text split by ``str.split``: pure Python."""
    with zipfile.ZipFile(LOG) as archive:
        text = archive.read("incident_event_log.csv").decode("utf-8-sig")
    lines = text.split("\n")
    tick("unzip")
    del text
    if not lines[-1]:
        lines.pop()
    cut = list(map(str.split, lines, [","] * len(lines), [14] * len(lines)))
    del lines
    cols = list(zip(*cut[1:]))
    tick("split")
    del cut
    ids, states, seqs = cols[0], cols[1], cols[5]
    callers, openers, opened, bys, updated, tails = (
        cols[7], cols[8], cols[9], cols[12], cols[13], cols[14])  # fmt: skip
    # times: each distinct value once
    days: dict[str, tuple[int, int, int]] = {}
    clocks: dict[str, tuple[int, int]] = {}
    times = {value: day_first(value, days, clocks) for value in {*updated, *opened}}
    ats = list(map(times.__getitem__, updated))
    tick("times")
    # the descriptive columns: each distinct (tail, caller) once
    infos: dict[tuple[str, str], tuple[Any, ...]] = {}
    canon: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    keys = list(zip(tails, callers))
    for key in set(keys):
        t = key[0].split(",")
        nz = [None if v == "?" else v for v in t]
        info = (
            nz[0], nz[2], nz[3], nz[4], nz[5], LEVELS[t[6]], URGENCIES[t[7]], PRIORITIES[t[8]],
            nz[9], nz[10], nz[18], None if key[1] == "?" else key[1],
        )  # fmt: skip
        infos[key] = canon.setdefault(info, info)
    rinfo = list(map(infos.__getitem__, keys))
    tick("infos")
    return ids, states, seqs, openers, opened, bys, ats, times, rinfo, list(canon)


def arrow_columns() -> tuple[Any, ...]:
    """The same columns from pyarrow's C tokenizer, each factorized: each distinct time and
    each distinct combination of the descriptive columns read once, mapped by codes."""
    import numpy as np  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.csv as pa_csv  # noqa: PLC0415

    with zipfile.ZipFile(LOG) as archive:
        data = archive.read("incident_event_log.csv")
    tick("unzip")
    names = [f"c{i}" for i in range(36)]
    need = [0, 1, 5, 7, 8, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23, 24, 32]
    table = pa_csv.read_csv(
        pa.py_buffer(data),
        read_options=pa_csv.ReadOptions(use_threads=False, skip_rows=1, column_names=names),
        parse_options=pa_csv.ParseOptions(quote_char=False, double_quote=False, escape_char=False),
        convert_options=pa_csv.ConvertOptions(
            column_types={names[i]: pa.string() for i in need},
            include_columns=[names[i] for i in need], strings_can_be_null=False,
            check_utf8=False,
        ),
    )  # fmt: skip
    del data
    factors = {}
    for i in need:
        encoded = table.column(names[i]).combine_chunks().dictionary_encode()
        factors[i] = (encoded.indices.to_numpy(), encoded.dictionary.to_pylist())
    del table
    tick("split")

    def take(values: list[Any], codes: Any) -> list[Any]:
        out = np.empty(len(values), dtype=object)
        for k, v in enumerate(values):
            out[k] = v
        return out.take(codes).tolist()  # type: ignore[no-any-return]

    def cells(i: int) -> list[str]:
        codes, values = factors[i]
        return take(values, codes)

    ids, states, seqs, openers, opened, bys = map(cells, (0, 1, 5, 8, 9, 12))
    days: dict[str, tuple[int, int, int]] = {}
    clocks: dict[str, tuple[int, int]] = {}
    times = {v: day_first(v, days, clocks) for v in {*factors[13][1], *factors[9][1]}}
    ats = take([times[v] for v in factors[13][1]], factors[13][0])
    tick("times")
    order = [14, 16, 17, 18, 19, 20, 21, 22, 23, 24, 32, 7]
    stacked = np.ascontiguousarray(np.stack([factors[i][0] for i in order], axis=1))
    rows = stacked.view(np.dtype((np.void, stacked.dtype.itemsize * len(order)))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    distinct = []
    values = [factors[i][1] for i in order]
    for picked in stacked[first].tolist():
        t = [values[j][c] for j, c in enumerate(picked)]
        nz = [None if v == "?" else v for v in t]
        distinct.append((
            nz[0], nz[1], nz[2], nz[3], nz[4], LEVELS[t[5]], URGENCIES[t[6]], PRIORITIES[t[7]],
            nz[8], nz[9], nz[10], nz[11],
        ))  # fmt: skip
    rinfo = take(distinct, inverse.ravel())
    tick("infos")
    return ids, states, seqs, openers, opened, bys, ats, times, rinfo, distinct


def floor(columns: Any = python_columns) -> dict[str, Incident]:
    TICKS.clear()
    tick("start")
    collecting = gc.isenabled()
    gc.disable()
    try:
        ids, states, seqs, openers, opened, bys, ats, times, rinfo, canon = columns()
        n = len(ids)
        cells = Counter()
        for info, k in Counter(rinfo).items():
            cells[info[5], info[6], info[7]] += k
        matrix, _ = infer_matrix(cells)
        table = matrix.table
        codes = {i[10] for i in canon if i[10] is not None}
        starts = [0, *compress(range(1, n), map(ne, ids, ids[1:])), n]
        channels = {rinfo[s][0] for s in starts[:-1]} - {None}
        workflow = import_workflow(
            resolution_codes=[*codes, "not given"],
            hold_reasons=SERVICENOW.hold_reasons.values(),
            channels=channels,
        )
        choice = workflow.choice
        targets = list(map({k: (v, REASONS.get(k)) for k, v in STATES.items()}.__getitem__, states))
        seqn = list(map(int, seqs))
        rows = list(zip(range(2, n + 2), ats, targets, seqn, bys, rinfo))
        tick("matrix+rows")
        appliers = Incident._appliers
        state_of = Incident._state_of
        opened_ = maker(IncidentOpened)
        assigned = maker(IncidentAssigned)
        started = maker(IncidentStarted)
        held = maker(IncidentHeld)
        resumed = maker(IncidentResumed)
        resolved = maker(IncidentResolved)
        closed = maker(IncidentClosed)
        reopened = maker(IncidentReopened)
        commented = maker(IncidentCommented)
        reprio = maker(IncidentReprioritized)
        updatedev = maker(IncidentUpdated)
        a_assigned, a_started, a_held = (appliers[IncidentAssigned], appliers[IncidentStarted],
                                         appliers[IncidentHeld])  # fmt: skip
        a_resumed, a_resolved, a_closed = (
            appliers[IncidentResumed],
            appliers[IncidentResolved],
            appliers[IncidentClosed],
        )
        a_reopened, a_commented, a_reprio = (
            appliers[IncidentReopened],
            appliers[IncidentCommented],
            appliers[IncidentReprioritized],
        )
        a_updated = appliers[IncidentUpdated]
        canceled = maker(IncidentCanceled)
        a_canceled = appliers[IncidentCanceled]
        new = object.__new__
        fill = Incident._fill_opening
        on_open = Incident._opening_applier
        wname, initial = workflow.name, str(workflow.initial)
        channel_of: dict[str, str] = {}
        hold_of: dict[str, str] = {}
        code_of: dict[str, str] = {}
        out: dict[str, Incident] = {}
        sources: dict[str, tuple[int, ...]] = {}
        NEW, WORK, HOLD, RES, CLO, CAN = (
            "new",
            "in_progress",
            "on_hold",
            "resolved",
            "closed",
            "canceled",
        )
        for s, e in pairwise(starts):
            key = ids[s]
            run = rows[s:e]
            line, at, _, _, by, info = run[0]
            (channel, category, subcategory, title, ci, impact, urgency, priority, group,
             assignee, _code, caller) = info  # fmt: skip
            explicit = table[impact, urgency] is not priority
            ch = channel or "portal"
            c = channel_of.get(ch)
            if c is None:
                c = channel_of[ch] = choice("channel", ch, "channel")
            oat = opened[s]
            oat = times[oat] if oat != "?" else at
            opener = openers[s]
            opener = by if opener == "?" else opener
            first = opened_(oat, "unknown" if opener == "?" else opener, initial, key, wname,
                            title or key, "", caller or "unknown", c, None, ci, category,
                            subcategory, impact, urgency, priority, explicit, group,
                            assignee)  # fmt: skip
            record = new(Incident)
            fields = record.__dict__
            fill(fields, first, workflow)
            fields.update(on_open(record, first))
            events = [first]
            src = [line]
            last = oat
            state = NEW
            reason_now = None
            prev = info
            title = title or key
            caller = caller or "unknown"
            firstrow = True
            for line, at, (target, reason), _seq, by, info in run:
                if at < last:
                    at = last
                by = "unknown" if by == "?" else by
                if target is None:
                    target = state
                made = len(events)
                current = state
                if current in (RES, CLO) and target not in (current, CLO):
                    ev = reopened(at, by, WORK, NOTE)
                    events.append(ev)
                    fields.update(a_reopened(record, ev))
                    fields["state"] = state_of[WORK]
                    state = WORK
                if info is not prev:
                    (_, r_category, r_subcategory, r_title, r_ci, r_impact, r_urgency,
                     r_priority, r_group, r_assignee, _code, r_caller) = info  # fmt: skip
                    if r_group != group:
                        cleared = ("group",) if r_group is None else ()
                        ev = assigned(
                            at,
                            by,
                            state,
                            r_group,
                            r_assignee,
                            cleared if r_assignee else (*cleared, "assignee"),
                        )
                        events.append(ev)
                        fields.update(a_assigned(record, ev))
                        group, assignee = r_group, r_assignee
                    elif r_assignee != assignee:
                        ev = assigned(at, by, state, None, r_assignee,
                                      () if r_assignee else ("assignee",))  # fmt: skip
                        events.append(ev)
                        fields.update(a_assigned(record, ev))
                        assignee = r_assignee
                    if (r_impact, r_urgency, r_priority) != (impact, urgency, priority):
                        ev = reprio(
                            at,
                            by,
                            state,
                            r_impact,
                            r_urgency,
                            r_priority,
                            table[r_impact, r_urgency] is not r_priority,
                            NOTE,
                        )
                        events.append(ev)
                        fields.update(a_reprio(record, ev))
                        impact, urgency, priority = r_impact, r_urgency, r_priority
                    r_title = r_title or key
                    r_caller = r_caller or caller
                    if (r_title, r_category, r_subcategory, r_ci, r_caller) != (
                        title,
                        category,
                        subcategory,
                        ci,
                        caller,
                    ) and state not in (CLO, CAN):
                        changes = tuple(
                            FieldChange(nm, fields[nm], v)
                            for nm, v in (("title", r_title), ("caller", r_caller),
                                          ("category", r_category),
                                          ("subcategory", r_subcategory), ("ci", r_ci))
                            if v != fields[nm]
                        )  # fmt: skip
                        if changes:
                            ev = updatedev(at, by, state, changes)
                            events.append(ev)
                            fields.update(a_updated(record, ev))
                        title, category, subcategory, ci, caller = (
                            r_title, r_category, r_subcategory, r_ci, r_caller)  # fmt: skip
                    prev = info
                if target != current or (target == HOLD and reason != reason_now):
                    ev = None
                    if target == WORK:
                        if current == NEW:
                            ev, ap = started(at, by, WORK), a_started
                        elif current == HOLD:
                            ev, ap = resumed(at, by, WORK, None), a_resumed
                    elif target == HOLD:
                        r = hold_of.get(reason)
                        if r is None:
                            r = hold_of[reason] = choice("hold_reason", reason, "hold reason")
                        ev, ap = held(at, by, HOLD, r), a_held
                    elif target == RES:
                        code = info[10] or "not given"
                        cd = code_of.get(code)
                        if cd is None:
                            cd = code_of[code] = choice("resolution_code", code, "code")
                        ev, ap = resolved(at, by, RES, cd, NOTE, None), a_resolved
                    elif target == CLO:
                        ev, ap = closed(at, by, CLO, False, None), a_closed  # noqa: FBT003
                    elif target == CAN:
                        ev, ap = canceled(at, by, CAN, NOTE), a_canceled
                    if ev is not None:
                        events.append(ev)
                        fields.update(ap(record, ev))
                        fields["state"] = state_of[ev.state]
                        state = ev.state
                        if target == HOLD:
                            reason_now = reason
                        elif target != CLO:
                            reason_now = None
                if len(events) == made and not firstrow:
                    ev = commented(at, by, state, NOTE, False)  # noqa: FBT003
                    events.append(ev)
                    fields.update(a_commented(record, ev))
                if len(events) > made:
                    last = at
                    src.extend([line] * (len(events) - made))
                firstrow = False
            fields["history"] = tuple(events)
            out[key] = record
            sources[key] = tuple(src)
        tick("build")
        return out, sources  # type: ignore[return-value]
    finally:
        if collecting:
            gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--phases", action="store_true", help="print each floor's phases")
    args = parser.parse_args()
    arrow_floor = partial(floor, arrow_columns)
    if args.check:
        lib = read_incident_log(LOG, zone="UTC")
        for name, run in (("python", floor), ("pyarrow", arrow_floor)):
            ours, sources = run()  # type: ignore[misc]
            differ = [k for k in lib.incidents if lib.incidents[k] != ours[k]]
            same = dict(lib.sources) == sources
            print(f"check {name} floor: {len(differ)} of {len(lib.incidents):,} incidents "
                  f"differ {differ[:5]}; sources equal: {same}")  # fmt: skip
    sides = {"pandas.read_csv": lambda: pd.read_csv(LOG),
             "floor, python split": floor,
             "floor, pyarrow": arrow_floor,
             "read_incident_log": lambda: read_incident_log(LOG, zone="UTC"),
             "  engine='python'": lambda: read_incident_log(LOG, zone="UTC", engine="python"),
             }  # fmt: skip
    wall = dict.fromkeys(sides, float("inf"))
    cpu = dict.fromkeys(sides, float("inf"))
    phases: dict[str, dict[str, float]] = {}
    sides["pandas.read_csv"]()
    for _ in range(args.repeats):
        for name, run in sides.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
            if name.startswith("floor"):
                best = phases.setdefault(name, {})
                for (_, t0), (phase, t1) in pairwise(TICKS):
                    best[phase] = min(best.get(phase, float("inf")), t1 - t0)
    print(f"python {platform.python_version()}, pandas {pd.__version__}, best of {args.repeats}")
    print(f"{'':22} {'wall s':>8} {'cpu s':>8} {'x wall':>7} {'x cpu':>7}")
    for name in sides:
        print(f"{name:22} {wall[name]:8.3f} {cpu[name]:8.3f} "
              f"{wall[name] / wall['pandas.read_csv']:6.2f}x "
              f"{cpu[name] / cpu['pandas.read_csv']:6.2f}x")  # fmt: skip
    if args.phases:
        for name, best in phases.items():
            print(f"{name}: " + ", ".join(f"{p} {t:.3f}" for p, t in best.items()) + " (CPU s)")


if __name__ == "__main__":
    main()
