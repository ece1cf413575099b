"""itsmcore.io on small exports: column mappings, rejected rows, anomalies, sources.

The bundled real log is tests/test_real_log.py's; these build their own CSV text.
"""

from __future__ import annotations

import csv
import gc
import io
import sys
import zipfile
from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from itsmcore import Incident, IncidentState, PriorityMatrix, ValidationError
from itsmcore.incident import incident_workflow
from itsmcore.io import SERVICENOW, AnomalyKind, LogMapping, read_incident_log
from itsmcore.storage import InMemoryStore, PostgresStore, SQLiteStore

HEADER = [
    "number", "incident_state", "reassignment_count", "reopen_count", "sys_mod_count",
    "caller_id", "opened_by", "opened_at", "sys_updated_by", "sys_updated_at",
    "contact_type", "category", "subcategory", "u_symptom", "cmdb_ci", "impact", "urgency",
    "priority", "assignment_group", "assigned_to", "closed_code",
]  # fmt: skip
T0 = datetime(2016, 2, 29, 1, 0, tzinfo=UTC)


def _row(number: str, state: str, minutes: int, **values: object) -> dict[str, str]:
    at = T0 + timedelta(minutes=minutes)
    row = dict.fromkeys(HEADER, "?") | {
        "number": number, "incident_state": state, "reassignment_count": "0",
        "reopen_count": "0", "sys_mod_count": "0", "caller_id": "Caller 1",
        "opened_by": "Opener", "opened_at": f"{T0.day}/{T0.month}/{T0.year} 01:00",
        "sys_updated_by": "Agent", "sys_updated_at": at.strftime("%d/%m/%Y %H:%M"),
        "contact_type": "Phone", "impact": "2 - Medium", "urgency": "2 - Medium",
        "priority": "3 - Moderate", "assignment_group": "Group 1",
    }  # fmt: skip
    return row | {k: str(v) for k, v in values.items()}


def _csv(rows: list[dict[str, str]], *, quoting: int = csv.QUOTE_MINIMAL) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, HEADER, quoting=quoting, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _read(text: str, **kwargs: object) -> object:
    return read_incident_log(io.StringIO(text), zone="UTC", **kwargs)  # type: ignore[arg-type]


LIFE = [
    _row("INC1", "New", 5),
    _row("INC1", "Active", 10, assigned_to="Ann", sys_mod_count=1),
    _row("INC1", "Awaiting User Info", 20, assigned_to="Ann", sys_mod_count=2),
    _row("INC1", "Active", 30, assigned_to="Ann", sys_mod_count=3),
    _row("INC1", "Resolved", 40, assigned_to="Ann", closed_code="code 6", sys_mod_count=4),
    _row("INC1", "Active", 50, assigned_to="Ann", reopen_count=1, sys_mod_count=5),
    _row(
        "INC1",
        "Active",
        55,
        assignment_group="Group 2",
        reassignment_count=1,
        reopen_count=1,
        sys_mod_count=6,
    ),
    _row(
        "INC1",
        "Resolved",
        60,
        assignment_group="Group 2",
        reassignment_count=1,
        reopen_count=1,
        closed_code="code 6",
        sys_mod_count=7,
    ),
    _row(
        "INC1",
        "Closed",
        70,
        assignment_group="Group 2",
        reassignment_count=1,
        reopen_count=1,
        closed_code="code 6",
        sys_mod_count=8,
    ),
]


def test_a_servicenow_style_log_becomes_the_lifecycle_it_records() -> None:
    result = _read(_csv(LIFE))
    inc = result.incidents["INC1"]
    assert [e.type.removeprefix("incident.") for e in inc.history] == [
        "opened", "assigned", "started", "held", "resumed", "resolved", "reopened",
        "assigned", "resolved", "closed",
    ]  # fmt: skip
    assert result.sources["INC1"] == (2, 3, 3, 4, 5, 6, 7, 8, 9, 10)
    assert (inc.state, inc.reopen_count, inc.reassignment_count) == (IncidentState.CLOSED, 1, 1)
    assert inc.history[3].reason == "awaiting_caller"
    assert inc.resolution_code == "code_6"
    assert result.report.anomalies == ()
    assert (result.report.rows, result.report.incidents, result.report.events) == (9, 1, 10)


def test_the_first_row_adds_only_what_differs_from_the_opening() -> None:
    # A first row in New is the opening itself; the second is a work note.
    result = _read(_csv([_row("INC1", "New", 5), _row("INC1", "New", 6)]))
    assert [e.type for e in result.incidents["INC1"].history] == [
        "incident.opened", "incident.commented",
    ]  # fmt: skip


def test_quoted_fields_read_as_the_csv_module_reads_them() -> None:
    rows = [r | {"u_symptom": 'Printer, "jammed"\nagain'} for r in LIFE]
    quoted = _read(_csv(rows, quoting=csv.QUOTE_ALL))
    assert quoted.incidents["INC1"].title == 'Printer, "jammed"\nagain'
    plain = _read(_csv(LIFE))
    # Each record spans two physical lines; a record's line is the one it ends on.
    ends = [3 + 2 * i for i in range(len(LIFE))]
    assert quoted.sources == {"INC1": (ends[0], ends[1], ends[1], *ends[2:])}
    assert [e.type for e in quoted.incidents["INC1"].history] == [
        e.type for e in plain.incidents["INC1"].history
    ]


def test_rows_that_cannot_be_read_are_rejected_with_their_line_and_reason() -> None:
    rows = [
        _row("INC1", "New", 5),
        _row("INC1", "Escalated", 6),  # line 3: unknown state
        _row("INC1", "Active", 7, sys_updated_at="31/2/2016 01:07"),  # line 4: no such day
        _row("?", "New", 8),  # line 5: no id
        _row("INC2", "New", 9, impact="9 - Huge"),  # line 6
        _row("INC2", "Active", 10),
    ]
    text = _csv(rows) + "INC3,New\n"  # line 8: two fields
    result = _read(text)
    reasons = {r.line: r.reason for r in result.report.rejected}
    assert sorted(reasons) == [3, 4, 5, 6, 8]
    assert "unknown state 'Escalated'" in reasons[3]
    assert reasons[4].startswith("sys_updated_at: unreadable time")
    assert reasons[5] == "number: no incident id"
    assert reasons[6].startswith("impact: unknown Impact '9 - Huge'")
    assert reasons[8] == f"2 fields where the header has {len(HEADER)}"
    assert list(result.incidents) == ["INC1", "INC2"]
    assert result.report.imported_rows == 2
    assert result.report.rows == 7


def test_anomalies_are_imported_and_reported() -> None:
    rows = [
        _row("INC1", "New", -30),  # before its opening: recorded at the opening
        _row("INC1", "-100", 10, sys_mod_count=1),
        _row("INC1", "Closed", 20, sys_mod_count=3),  # closed, never resolved
        _row("INC1", "Closed", 15, sys_mod_count=2),  # back in time, and after closure
    ]
    result = _read(_csv(rows))
    kinds = [(a.line, a.kind) for a in result.report.anomalies]
    assert kinds == [
        (2, AnomalyKind.TIME_BACKWARDS),
        (3, AnomalyKind.UNKNOWN_STATE),
        (4, AnomalyKind.CLOSED_UNRESOLVED),
        (5, AnomalyKind.TIME_BACKWARDS),
        (5, AnomalyKind.SEQUENCE_BACKWARDS),
        (5, AnomalyKind.UPDATED_WHILE_CLOSED),
    ]
    inc = result.incidents["INC1"]
    assert inc.state is IncidentState.CLOSED
    assert [e.at for e in inc.history] == [T0, T0 + timedelta(minutes=10),
                                           *[T0 + timedelta(minutes=20)] * 2]  # fmt: skip
    assert result.report.anomaly_counts()[AnomalyKind.TIME_BACKWARDS] == 2


def test_a_given_matrix_reads_disagreeing_priorities_as_explicit() -> None:
    rows = [_row("INC1", "New", 5), _row("INC1", "New", 6, priority="1 - Critical")]
    result = _read(_csv(rows), matrix=PriorityMatrix.itil_default())
    inc = result.incidents["INC1"]
    assert (str(inc.priority), inc.priority_overridden) == ("1 - Critical", True)
    assert result.report.unobserved == ()


def test_the_zone_reads_naive_times_and_is_required() -> None:
    text = _csv([_row("INC1", "New", 5)])
    berlin = read_incident_log(io.StringIO(text), zone="Europe/Berlin")
    assert berlin.incidents["INC1"].opened_at == T0 - timedelta(hours=1)
    with pytest.raises(TypeError):
        read_incident_log(io.StringIO(text))  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="unknown time zone"):
        read_incident_log(io.StringIO(text), zone="Mars/Olympus")


def test_sources_that_cannot_be_read_are_clear_errors(tmp_path: object) -> None:
    from pathlib import Path  # noqa: PLC0415

    folder = Path(str(tmp_path))
    with pytest.raises(ValidationError, match="no file"):
        read_incident_log(folder / "missing.csv", zone="UTC")
    archive = folder / "two.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.csv", _csv(LIFE))
        z.writestr("b.csv", _csv(LIFE[:1]))
    with pytest.raises(ValidationError, match="name the one to read with member="):
        read_incident_log(archive, zone="UTC")
    assert read_incident_log(archive, zone="UTC", member="b.csv").report.rows == 1
    with pytest.raises(ValidationError, match="no column 'team'"):
        _read(_csv(LIFE), mapping=LogMapping(id="number", state="incident_state",
                                             updated_at="sys_updated_at", group="team",
                                             states={"New": "new"}))  # fmt: skip
    with pytest.raises(ValidationError, match="the log is empty"):
        _read("")
    with pytest.raises(ValidationError, match="give each its hold reason"):
        LogMapping(id="a", state="b", updated_at="c", states={"waiting": "on_hold"})
    with pytest.raises(ValidationError, match="not an incident state"):
        LogMapping(id="a", state="b", updated_at="c", states={"x": "limbo"})


@pytest.mark.parametrize("store", ["memory", "sqlite", "postgres"])
def test_imported_incidents_round_trip_through_every_store(
    store: str, tmp_path: object, request: pytest.FixtureRequest
) -> None:
    result = _read(_csv(LIFE))
    Incident.register_workflow(result.workflow, replace=True)
    if store == "memory":
        db = InMemoryStore()
    elif store == "sqlite":
        db = SQLiteStore(f"{tmp_path}/i.db")
    else:
        db = PostgresStore(request.getfixturevalue("postgres_database"))
    with db.unit_of_work() as uow:
        for inc in result.incidents.values():
            uow.incidents.add(inc)
        uow.commit()
    with db.unit_of_work() as uow:
        assert uow.incidents.get("INC1") == result.incidents["INC1"]


STATES = ["New", "Active", "Awaiting User Info", "Awaiting Vendor", "Resolved", "Closed",
          "-100"]  # fmt: skip


@st.composite
def logs(draw: st.DrawFn) -> str:
    """Random logs: states, groups, people, priorities and times in any order."""
    rows = []
    for n in range(draw(st.integers(1, 3))):
        minutes = 0
        for k in range(draw(st.integers(1, 8))):
            minutes += draw(st.integers(-20, 60))
            impact, urgency = (
                draw(st.sampled_from(["1 - High", "2 - Medium", "3 - Low"])),
                "2 - Medium",
            )
            rows.append(_row(
                f"INC{n}", draw(st.sampled_from(STATES)), minutes, sys_mod_count=k,
                assignment_group=draw(st.sampled_from(["?", "Group 1", "Group 2"])),
                assigned_to=draw(st.sampled_from(["?", "Ann", "Bo"])),
                category=draw(st.sampled_from(["?", "Category 1", "Category 2"])),
                impact=impact, urgency=urgency,
                priority={"1 - High": "2 - High", "2 - Medium": "3 - Moderate",
                          "3 - Low": "4 - Low"}[impact],
            ))  # fmt: skip
    return _csv(rows)


@given(logs())
def test_the_fast_import_equals_the_import_through_every_verb(text: str) -> None:
    fast, verbs = _read(text), _read(text, _verbs=True)
    assert fast.incidents == verbs.incidents
    assert fast.sources == verbs.sources
    assert fast.report == verbs.report
    for number, inc in fast.incidents.items():
        lines = fast.sources[number]
        assert len(lines) == len(inc.history)
        assert list(lines) == sorted(lines)
        assert Incident.replay(inc.history, workflow=fast.workflow) == inc


@st.composite
def edited_logs(draw: st.DrawFn) -> str:
    """Random logs that also edit, cancel, pad values with spaces and name new actors."""
    rows = []
    for n in range(draw(st.integers(1, 3))):
        minutes = 0
        for k in range(draw(st.integers(1, 8))):
            minutes += draw(st.integers(-5, 60))
            rows.append(_row(
                f"INC{n}", draw(st.sampled_from([*STATES, "Canceled"])), minutes,
                sys_mod_count=k,
                sys_updated_by=draw(st.sampled_from(["Agent", "?", "Agent 2", " Agent "])),
                caller_id=draw(st.sampled_from(["Caller 1", "?", "Caller 2"])),
                u_symptom=draw(st.sampled_from(["?", "Symptom 1", " Symptom 1 ", "Symptom 2"])),
                cmdb_ci=draw(st.sampled_from(["?", "CI 1"])),
                closed_code=draw(st.sampled_from(["?", "code 6", "code 7"])),
                assigned_to=draw(st.sampled_from(["?", "Ann"])),
            ))  # fmt: skip
    return _csv(rows)


def _shapes(incident: Incident) -> list[tuple[type, dict[str, type]]]:
    """Each event's class and the type of each of its fields (equal values can differ in
    type: a state enum equals its string)."""
    return [
        (type(e), {k: type(v) for k, v in attrs.asdict(e, recurse=False).items()})
        for e in incident.history
    ]


@given(edited_logs(), st.booleans())
def test_the_fast_import_equals_the_verbs_on_edits_refusals_and_a_strict_workflow(
    text: str, strict: bool
) -> None:
    """Edits, refused changes (a strict desk refuses reopening closed incidents, closing
    unresolved ones and resolving with a code it does not know), actors seen for the first
    time: the bulk builder gives what the verbs give, field types included."""
    desk = incident_workflow(["code 6"], name="strict-desk") if strict else None
    fast, verbs = _read(text, workflow=desk), _read(text, workflow=desk, _verbs=True)
    assert fast.incidents == verbs.incidents
    assert fast.sources == verbs.sources
    assert fast.report == verbs.report
    for number, inc in fast.incidents.items():
        assert _shapes(inc) == _shapes(verbs.incidents[number])
        assert Incident.replay(inc.history, workflow=fast.workflow) == inc


@given(logs())
def test_every_row_explains_at_least_one_event_and_no_event_lacks_a_row(text: str) -> None:
    result = _read(text)
    by_incident: dict[str, set[int]] = {}
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), 2):
        by_incident.setdefault(row["number"], set()).add(line)
    assert {n: set(s) for n, s in result.sources.items()} == by_incident


def test_the_collector_is_left_as_it_was_and_frozen_objects_stay_frozen() -> None:
    """The import turns the cyclic collector off while it runs: it comes back as it was,
    and objects an application froze (a pre-fork server's) are not let go."""
    text = _csv(LIFE)
    try:
        gc.freeze()
        _read(text)
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0  # still frozen (some may have been freed since)
    finally:
        gc.unfreeze()
    gc.disable()
    try:
        _read(text)
        assert not gc.isenabled()
    finally:
        gc.enable()
    _read(text)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_the_servicenow_mapping_reads_its_columns() -> None:
    assert SERVICENOW.columns()["id"] == "number"
    assert SERVICENOW.states["-100"] is None


# --------------------------------------------------------------------------- the two readers

BAD_CELLS = {
    "incident_state": ["Escalated", "?", ""],
    "sys_updated_at": ["31/2/2016 01:07", "yesterday", "?", "29/2/2016 1:7"],
    "opened_at": ["30/2/2016 01:00", "soon"],
    "number": ["?", ""],
    "impact": ["9 - Huge", "High"],
    "priority": ["0 - Now"],
    "sys_mod_count": ["-1", "many"],
    "reopen_count": ["x"],
}
"""Cells that make a row unreadable (or, for reopen_count, that a final count ignores)."""


PLAIN = st.characters(exclude_characters='",\r\n')


@st.composite
def malformed_logs(draw: st.DrawFn) -> str:
    """Random plain exports with unreadable cells, rows of the wrong width, empty lines."""
    rows = []
    for n in range(draw(st.integers(1, 4))):
        minutes = 0
        for k in range(draw(st.integers(1, 6))):
            minutes += draw(st.integers(-10, 60))
            row = _row(
                f"INC{n}", draw(st.sampled_from([*STATES, "Canceled"])), minutes,
                sys_mod_count=k, assigned_to=draw(st.sampled_from(["?", "Ann", "Bo"])),
                sys_updated_by=draw(st.sampled_from(["Agent", "?", "Agent 2"])),
                closed_code=draw(st.sampled_from(["?", "code 6"])),
            )  # fmt: skip
            for column in draw(st.lists(st.sampled_from(sorted(BAD_CELLS)), max_size=2)):
                row[column] = draw(st.sampled_from(BAD_CELLS[column]))
            if draw(st.booleans()):  # any text but what would need quoting
                row["u_symptom"] = draw(st.text(PLAIN, max_size=4))
            rows.append(row)
    lines = _csv(rows).split("\n")
    for _ in range(draw(st.integers(0, 3))):  # rows of the wrong width and empty lines
        odd = draw(st.sampled_from(["", "INC9,New", " ", "INC1,New,,,,,", ",".join(["x"] * 30)]))
        lines.insert(draw(st.integers(1, len(lines))), odd)
    return "\n".join(lines)


def _same(one: object, other: object) -> None:
    assert one.incidents == other.incidents  # type: ignore[attr-defined]
    assert one.sources == other.sources  # type: ignore[attr-defined]
    assert one.report == other.report  # type: ignore[attr-defined]
    assert one.report.rejected == other.report.rejected  # type: ignore[attr-defined]
    assert one.workflow == other.workflow  # type: ignore[attr-defined]


@given(malformed_logs())
def test_the_c_tokenizer_and_the_python_reader_give_identical_imports(text: str) -> None:
    """The same incidents, sources and report, rejected rows with the same lines and
    reasons, whichever reader splits the text."""
    fast, pure = _read(text, engine="pyarrow"), _read(text, engine="python")
    assert (fast.report.engine, pure.report.engine) == ("pyarrow", "python")
    _same(fast, pure)
    assert _read(text).report.engine == "pyarrow"  # the default uses it when it can


@given(edited_logs())
def test_the_readers_agree_on_edits_new_actors_and_padded_values(text: str) -> None:
    _same(_read(text, engine="pyarrow"), _read(text, engine="python"))


def test_malformed_rows_are_rejected_alike_by_both_readers() -> None:
    rows = [
        _row("INC1", "New", 5),
        _row("INC1", "Escalated", 6),  # line 3: unknown state
        _row("INC1", "Active", 7, sys_updated_at="31/2/2016 01:07"),  # line 4
        _row("?", "New", 8),  # line 5: no id
        _row("INC2", "New", 9, opened_at="yesterday"),  # line 6: cannot open
        _row("INC2", "Active", 10),
    ]
    lines = _csv(rows).split("\n")
    lines[4:4] = ["", "INC3,New"]  # an empty line (line 5) and a short row (line 6)
    text = "\n".join(lines)
    fast, pure = _read(text, engine="pyarrow"), _read(text, engine="python")
    _same(fast, pure)
    assert [(r.line, r.reason) for r in fast.report.rejected] == [
        (3, ("incident_state: unknown state 'Escalated'; the mapping knows 'New', 'Active', "
             "'In Progress', 'Awaiting User Info', 'Awaiting Problem', 'Awaiting Vendor', "
             "'Awaiting Evidence', 'Awaiting Change', 'Resolved', 'Closed', 'Canceled', "
             "'-100'")),
        (4, "sys_updated_at: unreadable time: day is out of range for month"),
        (6, f"2 fields where the header has {len(HEADER)}"),
        (7, "number: no incident id"),
        (8, ("opened_at: unreadable time: 'yesterday' is not a day-first time "
             "(29/2/2016 01:16)")),
    ]  # fmt: skip
    assert fast.sources == {"INC1": (2,), "INC2": (9, 9)}  # opened, then started


def test_text_the_c_tokenizer_cannot_number_goes_through_the_csv_module() -> None:
    """Quoted fields (which may span lines) and carriage returns: the csv module reads
    them, whatever the engine asked for."""
    quoted = _csv(LIFE, quoting=csv.QUOTE_ALL)
    crlf = _csv(LIFE).replace("\n", "\r\n")
    for text in (quoted, crlf):
        result = _read(text, engine="pyarrow")
        assert result.report.engine == "python"
        _same(result, _read(text, engine="python"))
        assert result.sources == _read(_csv(LIFE)).sources


def test_a_lone_surrogate_is_refused_alike_by_both_readers() -> None:
    text = _csv([r | {"u_symptom": "half \ud800"} for r in LIFE])
    auto, pure = _read(text), _read(text, engine="python")
    _same(auto, pure)
    assert "lone surrogate" in auto.report.rejected[0].reason
    assert auto.report.engine == "python"  # pyarrow reads UTF-8 bytes, which cannot hold it


def test_an_ascii_file_and_a_utf8_file_read_alike(tmp_path: object) -> None:
    from pathlib import Path  # noqa: PLC0415

    folder = Path(str(tmp_path))
    plain, accented = folder / "plain.csv", folder / "accented.csv"
    plain.write_text(_csv(LIFE), encoding="utf-8")
    accented.write_text("\ufeff" + _csv([r | {"caller_id": "Zoë"} for r in LIFE]), "utf-8")
    for path in (plain, accented):
        _same(read_incident_log(path, zone="UTC", engine="pyarrow"),
              read_incident_log(path, zone="UTC", engine="python"))  # fmt: skip
    assert read_incident_log(accented, zone="UTC").incidents["INC1"].caller == "Zoë"
    (folder / "latin1.csv").write_bytes(_csv([r | {"caller_id": "Zoë"} for r in LIFE]).encode(
        "latin-1"))  # fmt: skip
    with pytest.raises(ValidationError, match="is not UTF-8 text"):
        read_incident_log(folder / "latin1.csv", zone="UTC")


def test_the_engine_is_checked_and_pyarrow_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _csv(LIFE)
    with pytest.raises(ValidationError, match="engine must be one of auto, pyarrow, python"):
        _read(text, engine="arrow")
    with_arrow = _read(text)
    with monkeypatch.context() as without_numpy:  # recent pyarrow does not require numpy
        without_numpy.setitem(sys.modules, "numpy", None)
        assert _read(text).report.engine == "python"
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    without = _read(text)
    assert without.report.engine == "python"
    _same(without, with_arrow)
    with pytest.raises(ValidationError, match=r"needs pyarrow: pip install 'itsmcore\[arrow\]'"):
        _read(text, engine="pyarrow")
