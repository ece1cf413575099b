"""The bundled real ServiceNow log, imported through itsmcore.io.

Each row of the export is one update of one incident (see ../shared/data/README.md).
The importer (``itsmcore.io.read_incident_log`` with the ``SERVICENOW`` mapping) is the one
place that says how rows become events; these tests hold it to the export, read here
independently with the csv module: every row is read and every incident built, each event
comes from a row, final states match, priorities equal the export's after every row (its
matrix is not ServiceNow's default), reopen counts equal the export's on every incident and
reassignment counts on at least 99.5 %; the log's genuine anomalies (13 incidents closed
without ever being resolved, 6 whose updates go back in time, 5 rows in the state -100)
are imported and reported, not dropped.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections import Counter, defaultdict
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from itsmcore import Impact, Incident, PriorityMatrix, Urgency
from itsmcore.incident import IncidentState, incident_workflow
from itsmcore.io import SERVICENOW, AnomalyKind, ImportResult, read_incident_log

_NAME = "incident_event_log.zip"
# The shared data sits beside the repository (../shared/data); ITSMCORE_SHARED_DATA names
# another folder.
_PLACES = [
    Path(os.environ.get("ITSMCORE_SHARED_DATA", "/nonexistent")),
    Path(__file__).parents[2] / "shared" / "data",
    Path("/work/shared/data"),
]
LOG = next((p / _NAME for p in _PLACES if (p / _NAME).exists()), _PLACES[1] / _NAME)
pytestmark = pytest.mark.skipif(not LOG.exists(), reason=f"the bundled log is not at {LOG}")

Rows = dict[str, list[dict[str, Any]]]


def _at(text: str) -> datetime:
    return datetime.strptime(text, "%d/%m/%Y %H:%M").replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def incidents() -> Rows:
    """The export's rows by incident number, each with its line in the file."""
    by_number: Rows = defaultdict(list)
    with zipfile.ZipFile(LOG) as archive, archive.open("incident_event_log.csv") as raw:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
        for row in reader:
            by_number[row["number"]].append({**row, "line": reader.line_num})
    return dict(by_number)


@pytest.fixture(scope="module")
def imported() -> ImportResult:
    return read_incident_log(LOG, zone="UTC")


def _anomalies(incidents: Rows) -> tuple[set[str], set[str]]:
    """Read off the export itself: closed without resolution; updates going back in time."""
    unresolved, backwards = set(), set()
    for number, rows in incidents.items():
        states = [r["incident_state"] for r in rows]
        if any(b == "Closed" and a not in ("Resolved", "Closed") for a, b in pairwise(states)):
            unresolved.add(number)
        times = [_at(rows[0]["opened_at"])] + [_at(r["sys_updated_at"]) for r in rows]
        if any(b < a for a, b in pairwise(times)):
            backwards.add(number)
    return unresolved, backwards


def _flagged(imported: ImportResult, kind: AnomalyKind) -> set[str]:
    return {a.id for a in imported.report.anomalies if a.kind is kind}


def test_every_row_is_read_and_every_incident_built(
    incidents: Rows, imported: ImportResult
) -> None:
    report = imported.report
    assert (report.rows, report.incidents, report.rejected) == (141_712, 24_918, ())
    assert list(imported.incidents) == list(incidents)
    assert report.events == sum(len(i.history) for i in imported.incidents.values())


def test_each_event_comes_from_a_row_and_each_row_explains_events(
    incidents: Rows, imported: ImportResult
) -> None:
    clamped = {a.line for a in imported.report.anomalies if a.kind is AnomalyKind.TIME_BACKWARDS}
    for number, rows in incidents.items():
        inc, sources = imported.incidents[number], imported.sources[number]
        assert len(sources) == len(inc.history)
        assert list(sources) == sorted(sources)
        assert set(sources) == {r["line"] for r in rows}, number  # none invented, none lost
        by_line = {r["line"]: r for r in rows}
        assert inc.history[0].at == _at(rows[0]["opened_at"])
        for event, line in zip(inc.history[1:], sources[1:]):
            if line not in clamped:
                assert event.at == _at(by_line[line]["sys_updated_at"]), (number, line)


def test_final_states_match(incidents: Rows, imported: ImportResult) -> None:
    for number, rows in incidents.items():
        known = [SERVICENOW.states[r["incident_state"]] for r in rows]
        final = next(s for s in reversed(known) if s is not None)
        assert imported.incidents[number].state == final, number


def test_priorities_equal_the_exports_after_every_row(
    incidents: Rows, imported: ImportResult
) -> None:
    """The record after the last event of each row has that row's priority."""
    for number, rows in incidents.items():
        inc, sources = imported.incidents[number], imported.sources[number]
        after: dict[int, str] = {}
        steps = iter(sources)

        def keep(_event: object, record: Incident, steps: Any = steps, after: Any = after) -> None:
            after[next(steps)] = str(record.priority)  # the last event of a row wins

        inc._walk(keep, history=False)
        assert after == {r["line"]: r["priority"] for r in rows}, number


def test_reopen_counts_all_and_reassignment_counts_nearly_all_equal_the_exports(
    incidents: Rows, imported: ImportResult
) -> None:
    reassignments = 0
    differ = set()
    for number, rows in incidents.items():
        inc, last = imported.incidents[number], rows[-1]
        assert inc.reopen_count == int(last["reopen_count"]), number
        if inc.reassignment_count == int(last["reassignment_count"]):
            reassignments += 1
        else:
            differ.add(number)
    assert reassignments / len(incidents) >= 0.995, reassignments / len(incidents)
    assert _flagged(imported, AnomalyKind.COUNT_DIFFERS) == differ


def test_the_genuine_anomalies_are_imported_and_reported(
    incidents: Rows, imported: ImportResult
) -> None:
    unresolved, backwards = _anomalies(incidents)
    assert (len(unresolved), len(backwards)) == (13, 6)
    assert _flagged(imported, AnomalyKind.CLOSED_UNRESOLVED) == unresolved
    assert _flagged(imported, AnomalyKind.TIME_BACKWARDS) == backwards
    unknown = {
        r["line"] for rows in incidents.values() for r in rows if r["incident_state"] == "-100"
    }
    reported = {a.line for a in imported.report.anomalies if a.kind is AnomalyKind.UNKNOWN_STATE}
    assert len(unknown) == 5
    assert reported == unknown
    for number in unresolved | backwards:  # kept, whole: every row of theirs is in
        assert set(imported.sources[number]) == {r["line"] for r in incidents[number]}
    for number in unresolved:
        closed = imported.incidents[number]
        assert closed.state is IncidentState.CLOSED
        assert closed.resolved_at is None


def test_the_fast_import_equals_the_one_through_every_verb(imported: ImportResult) -> None:
    """The bulk builder checks each event as its verb would: both give equal incidents."""
    through_verbs = read_incident_log(LOG, zone="UTC", _verbs=True)
    assert through_verbs.report == imported.report
    assert through_verbs.sources == imported.sources
    assert through_verbs.incidents == imported.incidents


def test_the_inferred_matrix_is_the_exports_not_servicenows_default(
    imported: ImportResult,
) -> None:
    # Low x Low is 4 - Low in this export, not 5 - Planning (its README); High x Low never
    # occurs and keeps ITIL's value.
    expected = PriorityMatrix.from_rows(Impact, Urgency, [[1, 2, 3], [2, 3, 4], [3, 4, 4]])
    assert imported.report.matrix == expected
    assert imported.report.unobserved == ((Impact.HIGH, Urgency.LOW),)
    assert not any(i.priority_overridden for i in imported.incidents.values())


def test_on_a_workflow_that_cannot_reopen_closed_incidents_those_reopens_are_refused(
    incidents: Rows, imported: ImportResult
) -> None:
    desk = incident_workflow(
        [f"code {k}" for k in range(1, 18)] + ["not given"],
        hold_reasons=["Awaiting Evidence"],
        channels=["Self service", "IVR", "Direct opening"],
        name="uci-log-default",
    )
    reopened_closed = {
        n
        for n, rows in incidents.items()
        if any(
            a["incident_state"] == "Closed" and b["incident_state"] == "Active"
            for a, b in pairwise(rows)
        )
    }
    assert len(reopened_closed) == 12
    strict = read_incident_log(LOG, zone="UTC", workflow=desk)
    refused = [a for a in strict.report.anomalies if a.kind is AnomalyKind.REFUSED]
    reopens = {a.id for a in refused if "cannot 'reopen' from state closed" in a.detail}
    closes = {a.id for a in refused if a.detail.startswith("close: cannot 'close'")}
    unresolved, _ = _anomalies(incidents)
    assert reopens == reopened_closed
    assert closes == unresolved
    assert strict.report.incidents == 24_918  # refused changes, never refused incidents


def test_a_replayed_incident_reads_as_the_export_does(imported: ImportResult) -> None:
    inc = imported.incidents["INC0000045"]
    assert inc.state is IncidentState.CLOSED
    assert (str(inc.priority), inc.channel, inc.resolution_code) == (
        "3 - Moderate", "phone", "code_5",
    )  # fmt: skip
    assert Incident.replay(inc.history, workflow=imported.workflow) == inc


def _as_logged(inc: Incident) -> Incident:
    """An incident as its first row logged it: its opening alone."""
    return Incident.replay(inc.history[:1], workflow=inc.workflow)


@pytest.mark.parametrize(
    ("by", "column"),
    [("category", "category"), ("symptom", "u_symptom"), ("subcategory", "subcategory")],
)
def test_the_top_recurring_groups_are_the_exports_own_counts(
    incidents: Rows, imported: ImportResult, by: str, column: str
) -> None:
    from itsmcore.recurrence import detect_recurring  # noqa: PLC0415 - beside its use

    logged = [_as_logged(inc) for inc in imported.incidents.values()]
    keys = {
        "symptom": lambda i: i.title if i.title != i.id else None,  # the symptom is the title
        "subcategory": lambda i: i.subcategory,  # the named key pairs it with its category
    }
    key = keys.get(by, by)
    found = detect_recurring(logged, by=key)[:10]
    export: Counter[str] = Counter(
        rows[0][column] for rows in incidents.values() if rows[0][column] != "?"
    )
    assert [(c.key, c.count) for c in found] == export.most_common(10)
    for candidate in found:
        opened = [
            _at(r[0]["opened_at"]) for r in incidents.values() if r[0][column] == candidate.key
        ]
        assert (candidate.first_seen, candidate.last_seen) == (min(opened), max(opened))
        assert sum(n for _, n in candidate.monthly) == candidate.count


def test_the_c_tokenizer_and_the_python_reader_import_the_log_identically(
    imported: ImportResult,
) -> None:
    """The default reads the log with pyarrow's C tokenizer (the test extra installs it);
    the pure-Python reader gives the same incidents, sources and report."""
    assert imported.report.engine == "pyarrow"
    pure = read_incident_log(LOG, zone="UTC", engine="python")
    assert pure.report.engine == "python"
    assert pure.report == imported.report
    assert pure.sources == imported.sources
    assert pure.incidents == imported.incidents
    assert pure.workflow == imported.workflow
