"""Import ticket exports: incident event logs into incidents with their full histories.

An incident event log has one row per update of an incident (ServiceNow's audit exports,
the public UCI "incident management process enriched event log"). :func:`read_incident_log`
reads such a log — a ``.csv`` file, a ``.zip`` holding one, or any text stream — and
rebuilds every incident through its verbs, so each change passes the same checks a live
desk's would:

- the first row of an incident opens it (at its ``opened_at``, with the row's values);
- each row then becomes the events that explain it against the row before: a reopen, a
  routing, a new impact/urgency/priority, edited descriptive fields and the state change
  (one event per kind of change, at the row's time, in that order), or a work note when
  the row changes nothing the library tracks. No event is invented: every event names the
  row it came from (``ImportResult.sources``).

Which column is what, and how the export's states read, is a :class:`LogMapping`;
:data:`SERVICENOW` is ServiceNow's. Rows that cannot be read (a bad time, an unknown
state, a wrong number of fields) are rejected with their line and reason; what the log
does that a desk should not (closing without resolving, updates going back in time, a
state the export could not name) is imported as it happened and listed as an
:class:`Anomaly`. :class:`ImportReport` counts it all.
"""

# The bulk builder checks events with the incident verbs' own helpers (the practice's event
# classes and priority fields), which the engine keeps private to practices.
# ruff: noqa: SLF001

from __future__ import annotations

import csv
import gc
import importlib
import io
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from functools import partial
from itertools import compress, pairwise, repeat
from operator import ne
from os import PathLike, fspath
from pathlib import Path
from types import MemberDescriptorType
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs

from itsmcore._time import zone as _zone
from itsmcore.capabilities import Assigned, Canceled, Commented, Reopened, Reprioritized
from itsmcore.errors import ItsmError, ValidationError
from itsmcore.incident import (
    Channel,
    HoldReason,
    Incident,
    IncidentClosed,
    IncidentHeld,
    IncidentOpened,
    IncidentResolved,
    IncidentResumed,
    IncidentStarted,
    IncidentState,
    incident_workflow,
)
from itsmcore.priority import Impact, Level, Priority, PriorityMatrix, Urgency
from itsmcore.record import MAX_EVENTS, label, optional_label, text
from itsmcore.workflow import Transition, Workflow, normalized

if TYPE_CHECKING:
    from itsmcore.events import Event

__all__ = [
    "SERVICENOW",
    "Anomaly",
    "AnomalyKind",
    "ImportReport",
    "ImportResult",
    "LogMapping",
    "RejectedRow",
    "import_workflow",
    "infer_matrix",
    "read_incident_log",
]

_NEW, _WORK, _HOLD = IncidentState.NEW, IncidentState.IN_PROGRESS, IncidentState.ON_HOLD
_RESOLVED, _CLOSED, _CANCELED = IncidentState.RESOLVED, IncidentState.CLOSED, IncidentState.CANCELED
_STATES: Final = frozenset(IncidentState)
_DAY_FIRST: Final = "%d/%m/%Y %H:%M"
_DAY_FIRST_RE: Final = re.compile(r"\s*(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2})\s*")
_DAY_RE: Final = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_CLOCK_RE: Final = re.compile(r"(\d{1,2}):(\d{2})")
_UNSEEN: Final = object()
_NOTE: Final = "imported: an update of the export"
"""Reason, notes or text of the events whose export row gives none."""


# --------------------------------------------------------------------------- the mapping


def _state_table(value: Mapping[str, str | None]) -> dict[str, IncidentState | None]:
    if not isinstance(value, Mapping) or not value:
        raise ValidationError("states must map each export state to an incident state or None")
    out: dict[str, IncidentState | None] = {}
    for name, state in value.items():
        if state is not None and state not in _STATES:
            allowed = ", ".join(IncidentState)
            raise ValidationError(
                f"states maps {name!r} to {state!r}, not an incident state ({allowed}, "
                "or None for a state the export could not name)"
            )
        out[str(name)] = None if state is None else IncidentState(state)
    return out


def _reasons(value: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValidationError("hold_reasons must map export states to hold reasons")
    return {str(k): str(v) for k, v in value.items()}


def _markers(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise ValidationError(f"empty is a collection of markers, not the string {value!r}")
    return frozenset(value)


@attrs.frozen(kw_only=True)
class LogMapping:
    """How an event log's columns and states read: which column holds what.

    Every field naming a column is the column's header; ``None`` means the export has no
    such column. ``id``, ``state`` and ``updated_at`` are required; without ``opened_at``
    an incident opens at its first row's time. ``impact`` and ``urgency`` default to
    Medium when absent; a ``priority`` column the matrix does not give is recorded as an
    explicit priority (an override), as a desk that set it by hand would have.

    ``states`` maps each export state to an incident state (``"new"``, ``"in_progress"``,
    ``"on_hold"``, ``"resolved"``, ``"closed"``, ``"canceled"``) or to ``None`` for a
    state the export could not name (the incident stays as it was, and the row is
    reported); a row in a state not listed is rejected. ``hold_reasons`` gives the hold
    reason of each export state mapped to ``"on_hold"``.

    Times are read with ``time_format`` (a ``strptime`` format; ``None`` reads ISO 8601),
    in the zone :func:`read_incident_log` is given unless the text names an offset.
    Values in ``empty`` mean "no value".
    """

    id: str
    state: str
    updated_at: str
    states: Mapping[str, IncidentState | None] = attrs.field(converter=_state_table)
    hold_reasons: Mapping[str, str] = attrs.field(factory=dict, converter=_reasons)
    opened_at: str | None = None
    updated_by: str | None = None
    opened_by: str | None = None
    caller: str | None = None
    title: str | None = None
    impact: str | None = None
    urgency: str | None = None
    priority: str | None = None
    group: str | None = None
    assignee: str | None = None
    category: str | None = None
    subcategory: str | None = None
    ci: str | None = None
    channel: str | None = None
    resolution_code: str | None = None
    sequence: str | None = None
    """An update counter (ServiceNow's ``sys_mod_count``): a decrease is reported."""
    reopen_count: str | None = None
    """The export's own reopen count: a final count that differs is reported."""
    reassignment_count: str | None = None
    """The export's own reassignment count: a final count that differs is reported."""
    time_format: str | None = _DAY_FIRST
    empty: frozenset[str] = attrs.field(default=frozenset({""}), converter=_markers)
    missing_code: str = "not given"
    """The resolution code of a resolution whose row names none."""

    def __attrs_post_init__(self) -> None:
        for name in ("id", "state", "updated_at"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValidationError(f"the mapping needs the {name} column's name, got {value!r}")
        unheld = [s for s, t in self.states.items() if t is _HOLD and s not in self.hold_reasons]
        if unheld:
            raise ValidationError(
                f"the export states {', '.join(map(repr, unheld))} map to on_hold: give each "
                "its hold reason in hold_reasons"
            )

    def columns(self) -> dict[str, str]:
        """The columns this mapping reads, by what they hold."""
        named = ((name, getattr(self, name)) for name in _COLUMN_FIELDS)
        return {name: column for name, column in named if column is not None}


_COLUMN_FIELDS: Final = (
    "id", "state", "updated_at", "opened_at", "updated_by", "opened_by", "caller", "title",
    "impact", "urgency", "priority", "group", "assignee", "category", "subcategory", "ci",
    "channel", "resolution_code", "sequence", "reopen_count", "reassignment_count",
)  # fmt: skip


SERVICENOW: Final = LogMapping(
    id="number",
    state="incident_state",
    updated_at="sys_updated_at",
    states={
        "New": _NEW,
        "Active": _WORK,
        "In Progress": _WORK,
        "Awaiting User Info": _HOLD,
        "Awaiting Problem": _HOLD,
        "Awaiting Vendor": _HOLD,
        "Awaiting Evidence": _HOLD,
        "Awaiting Change": _HOLD,
        "Resolved": _RESOLVED,
        "Closed": _CLOSED,
        "Canceled": _CANCELED,
        "-100": None,
    },
    hold_reasons={
        "Awaiting User Info": HoldReason.AWAITING_CALLER,
        "Awaiting Problem": HoldReason.AWAITING_PROBLEM,
        "Awaiting Vendor": HoldReason.AWAITING_VENDOR,
        "Awaiting Change": HoldReason.AWAITING_CHANGE,
        "Awaiting Evidence": "awaiting_evidence",
    },
    opened_at="opened_at",
    updated_by="sys_updated_by",
    opened_by="opened_by",
    caller="caller_id",
    title="u_symptom",
    impact="impact",
    urgency="urgency",
    priority="priority",
    group="assignment_group",
    assignee="assigned_to",
    category="category",
    subcategory="subcategory",
    ci="cmdb_ci",
    channel="contact_type",
    resolution_code="closed_code",
    sequence="sys_mod_count",
    reopen_count="reopen_count",
    reassignment_count="reassignment_count",
    time_format=_DAY_FIRST,
    empty={"?", ""},
)
"""ServiceNow's incident audit export (as in the UCI event log): day-first times, ``?``
for empty, ``-100`` for a state it could not name. The symptom is the title (the
incident number when there is none)."""


# --------------------------------------------------------------------------- the report


class AnomalyKind(StrEnum):
    """What a log did that a desk should not; imported as it happened, and reported."""

    CLOSED_UNRESOLVED = "closed_unresolved"
    """Closed without being resolved first (the import workflow lets it close)."""
    TIME_BACKWARDS = "time_backwards"
    """An update before the one it follows (or before the opening): recorded at the time
    of the event before it, since a record's time never goes backwards."""
    UNKNOWN_STATE = "unknown_state"
    """A state the export could not name (``-100``): the incident stays as it was."""
    SEQUENCE_BACKWARDS = "sequence_backwards"
    """The update counter went down: rows may be out of order in the export."""
    UPDATED_WHILE_CLOSED = "updated_while_closed"
    """An update to a closed incident (a work note unless it reopens it)."""
    REFUSED = "refused"
    """A change the workflow refused; the incident keeps what it was."""
    COUNT_DIFFERS = "count_differs"
    """A reopen or reassignment count differs from the export's own."""


@attrs.frozen
class RejectedRow:
    """A row that could not be read: its line in the file (the header is line 1)."""

    line: int
    reason: str
    id: str | None = None


@attrs.frozen
class Anomaly:
    """Something the log did that a desk should not, at a line of the file."""

    id: str
    line: int
    kind: AnomalyKind
    detail: str


@attrs.frozen(kw_only=True)
class ImportReport:
    """How an import went: rows read, incidents and events built, what was rejected."""

    rows: int
    """Data rows in the file (the header not counted)."""
    incidents: int
    events: int
    rejected: tuple[RejectedRow, ...]
    anomalies: tuple[Anomaly, ...]
    matrix: PriorityMatrix
    """The impact x urgency -> priority matrix the priorities were read with."""
    unobserved: tuple[tuple[Level, Level], ...] = ()
    """Cells of an inferred matrix no row showed (filled with ITIL's default)."""
    engine: str = attrs.field(default="python", eq=False)
    """Which reader split the text into cells: ``"pyarrow"`` (its C tokenizer) or
    ``"python"``. Both give equal reports, so it takes no part in comparing them."""

    @property
    def imported_rows(self) -> int:
        """Rows that became events (every row read but the rejected ones)."""
        return self.rows - len(self.rejected)

    def anomaly_counts(self) -> dict[AnomalyKind, int]:
        """How many anomalies of each kind, in the order of :class:`AnomalyKind`."""
        counts = Counter(a.kind for a in self.anomalies)
        return {kind: counts[kind] for kind in AnomalyKind if counts[kind]}

    def summary(self) -> str:
        """A few lines a person can read."""
        lines = [
            (
                f"{self.rows:,} rows read, {self.incidents:,} incidents built from "
                f"{self.imported_rows:,} rows ({self.events:,} events), "
                f"{len(self.rejected):,} rows rejected"
            )
        ]
        lines += [f"  rejected line {r.line}: {r.reason}" for r in self.rejected[:10]]
        if len(self.rejected) > 10:
            lines.append(f"  ... and {len(self.rejected) - 10:,} more")
        lines += [f"  {kind}: {n:,}" for kind, n in self.anomaly_counts().items()]
        return "\n".join(lines)


@attrs.frozen(kw_only=True)
class ImportResult:
    """The incidents of a log, the line each of their events came from, and the report."""

    incidents: Mapping[str, Incident] = attrs.field(eq=False)
    """By id, in the order the log first shows them."""
    sources: Mapping[str, tuple[int, ...]] = attrs.field(eq=False)
    """Per incident, the file line of each event of its history (the opening's is its
    first row's)."""
    workflow: Workflow
    """The workflow the incidents run on; register it (``Incident.register_workflow``)
    before storing them."""
    report: ImportReport


# --------------------------------------------------------------------------- reading


def _read_text(  # noqa: C901 - a path, a zip or a stream
    source: str | PathLike[str] | TextIO, member: str | None
) -> str | bytes:
    """The whole text of a ``.csv`` path, a ``.zip`` path (one CSV inside) or a text stream.

    A file that is all ASCII is returned as its bytes (valid UTF-8 as it is: the C
    tokenizer reads them without a copy; :func:`_as_text` decodes them for the csv module);
    any other file is decoded here, so bad UTF-8 is refused whichever reader reads it.
    """
    if isinstance(source, (str, PathLike)):
        path = Path(fspath(source))
        if not path.is_file():
            raise ValidationError(f"no file at {path}")
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if not n.endswith("/")]
                if member is None:
                    csvs = [n for n in names if n.lower().endswith(".csv")]
                    if len(csvs) != 1:
                        raise ValidationError(
                            f"{path} holds {len(csvs)} .csv files ({', '.join(csvs) or 'none'}):"
                            " name the one to read with member="
                        )
                    member = csvs[0]
                elif member not in names:
                    raise ValidationError(f"{path} holds no {member!r}; it holds {names}")
                data = archive.read(member)
        else:
            data = path.read_bytes()
        if data.isascii():
            return data
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"{path} is not UTF-8 text: {exc}") from None
    read = getattr(source, "read", None)
    if read is None:
        raise ValidationError(f"read a path or a text stream, not {type(source).__name__}")
    text = read()
    if not isinstance(text, str):
        raise ValidationError("the stream gives bytes; wrap it: io.TextIOWrapper(stream, 'utf-8')")
    return text.removeprefix("\ufeff")


def _as_text(text: str | bytes) -> str:
    """The text of :func:`_read_text`'s result (its bytes are ASCII)."""
    return text if isinstance(text, str) else text.decode("ascii")


def _plain(text: str | bytes) -> bool:
    """Whether the csv module would read ``text`` as plain comma-separated lines."""
    if isinstance(text, bytes):
        return b'"' not in text and b"\r" not in text
    return '"' not in text and "\r" not in text


def _line_widths(lines: list[str], width: int) -> tuple[list[int] | None, list[RejectedRow]]:
    """Which plain lines have ``width`` fields, and which are rejected.

    The indices kept (None: all of them), and a rejection for each line of another width;
    empty lines are skipped, not rejected.
    """
    commas = list(map(str.count, lines, repeat(",", len(lines))))
    if commas.count(width - 1) == len(lines):
        return None, []
    keep = [i for i, n in enumerate(commas) if n == width - 1]
    rejected = [
        RejectedRow(i + 1, f"{n + 1} fields where the header has {width}")
        for i, n in enumerate(commas)
        if n != width - 1 and lines[i]
    ]
    return keep, rejected


def _header(text: str | bytes) -> list[str]:
    """The header row's names, as the csv module reads the first record."""
    if _plain(text):
        first = text.split(b"\n", 1)[0] if isinstance(text, bytes) else text.split("\n", 1)[0]
        return _as_text(first).split(",")
    return next(csv.reader(io.StringIO(_as_text(text), newline="")), [])


def _table(text: str) -> tuple[list[str], list[int], _Columns, list[RejectedRow]]:
    """The header, and the data rows' lines and columns; rows of the wrong width rejected.

    Text without a quote or a carriage return is what the csv module would read as plain
    comma-separated lines: it is split in one call and cut into columns by slicing, at a
    fifth of the cost of splitting line by line and transposing (most of what reading the
    UCI log cost). Any other text goes through the csv module.
    """
    if _plain(text):
        lines = text.split("\n")
        header = lines[0].split(",")
        width = len(header)
        numbers = list(range(1, len(lines) + 1))
        keep, rejected = _line_widths(lines, width)
        if keep is not None:
            lines = [lines[i] for i in keep]
            numbers = [numbers[i] for i in keep]
        cells = ",".join(lines[1:]).split(",") if len(lines) > 1 else []
        return header, numbers[1:], _Columns(cells, width), rejected
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    width = len(header)
    numbers, rows, rejected = [], [], []
    for row in reader:
        if len(row) == width:
            numbers.append(reader.line_num)
            rows.append(row)
        elif row:
            rejected.append(
                RejectedRow(reader.line_num, f"{len(row)} fields where the header has {width}")
            )
    return header, numbers, _Columns([cell for row in rows for cell in row], width), rejected


class _Columns:
    """The columns of a table kept as one flat list of cells, each cut out when read.

    The column source the pure-Python reader gives :func:`_parse`; :class:`_ArrowColumns`
    is the C tokenizer's. A column is named by its position; ``None`` is a column the
    export lacks, every cell of it empty.
    """

    def __init__(self, cells: list[str], width: int) -> None:
        self._cells, self._width = cells, width
        self.count = len(cells) // width if width else 0
        self._cut: dict[int, list[str]] = {}

    def _column(self, k: int | None) -> list[str]:
        if k is None:
            return [""] * self.count
        found = self._cut.get(k)
        if found is None:
            found = self._cut[k] = self._cells[k :: self._width]
        return found

    def distinct(self, k: int | None) -> Iterable[str]:
        """The column's distinct values."""
        return set(self._column(k))

    def mapped(self, k: int | None, known: Mapping[str, Any]) -> list[Any]:
        """The column's cells mapped through ``known`` (which holds every distinct value)."""
        return list(map(known.__getitem__, self._column(k)))

    def where(self, k: int | None, values: Container[str]) -> Iterator[tuple[int, str]]:
        """The rows (index, value) whose cell is one of ``values``, in order."""
        return ((i, v) for i, v in enumerate(self._column(k)) if v in values)

    def cells(self, k: int | None) -> list[str]:
        """The column's cells."""
        return self._column(k)


class _ArrowColumns:
    """The columns pyarrow's C tokenizer read, each factorized once: codes and values.

    Each distinct value is handed to :func:`_parse`'s readers once, as the pure-Python
    reader's; a column is then mapped through the results by its codes.
    """

    def __init__(self, table: Any, positions: Mapping[int, str], count: int) -> None:
        self._table, self._names, self.count = table, positions, count
        self._factors: dict[int, tuple[Any, list[str]]] = {}

    def _factor(self, k: int) -> tuple[Any, list[str]]:
        found = self._factors.get(k)
        if found is None:
            column = self._table.column(self._names[k])
            encoded = column.combine_chunks().dictionary_encode()
            codes = encoded.indices.to_numpy(zero_copy_only=False)
            found = self._factors[k] = (codes, encoded.dictionary.to_pylist())
        return found

    def distinct(self, k: int | None) -> Iterable[str]:
        return [""] if k is None else self._factor(k)[1]

    def mapped(self, k: int | None, known: Mapping[str, Any]) -> list[Any]:
        if k is None:
            return [known[""]] * self.count
        codes, values = self._factor(k)
        results = _np().empty(len(values), dtype=object)
        for i, value in enumerate(values):  # one by one: a tuple is one value, not a row
            results[i] = known[value]
        mapped: list[Any] = results.take(codes).tolist()
        return mapped

    def where(self, k: int | None, values: Container[str]) -> Iterator[tuple[int, str]]:
        if k is None:
            return iter(() if "" not in values else ((i, "") for i in range(self.count)))
        np = _np()
        codes, distinct = self._factor(k)
        chosen = [i for i, value in enumerate(distinct) if value in values]
        rows = np.flatnonzero(np.isin(codes, chosen)).tolist()
        return ((i, distinct[codes[i]]) for i in rows)

    def cells(self, k: int | None) -> list[str]:
        return self.mapped(k, {v: v for v in self.distinct(k)})


def _np() -> Any:
    return importlib.import_module("numpy")


def _arrow() -> tuple[Any, Any] | None:
    """The modules ``pyarrow`` and ``pyarrow.csv``, or None: the ``arrow`` extra is absent.

    numpy, which reads the codes, is part of the extra: recent pyarrow does not require it.
    """
    try:
        importlib.import_module("numpy")
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.csv")
    except ImportError:
        return None


def _arrow_table(
    text: str | bytes, header: list[str], wanted: Iterable[int]
) -> tuple[list[int], _ArrowColumns, list[RejectedRow]] | None:
    """The data rows' lines and wanted columns as pyarrow's C tokenizer reads them.

    Only for plain text (no quote, no carriage return: see :func:`_table`), where a row's
    line is known without reading it; the rows it keeps and rejects are the pure reader's
    (same widths, same empty lines skipped). None when pyarrow is absent, the text is not
    plain, or pyarrow read another number of rows than the lines say.
    """
    modules = _arrow()
    if modules is None or not _plain(text) or len(header) < 2:  # one column: an empty line is a row
        return None
    pa, pa_csv = modules
    width = len(header)
    names = [f"c{i}" for i in range(width)]
    positions = {k: names[k] for k in sorted(set(wanted))}
    invalid: list[int] = []

    def skip(_row: Any) -> str:
        invalid.append(1)
        return "skip"

    try:  # a stream's text may hold a lone surrogate: the csv module reads that
        data = text.encode() if isinstance(text, str) else text
    except UnicodeEncodeError:
        return None
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(use_threads=False, skip_rows=1, column_names=names),
            parse_options=pa_csv.ParseOptions(
                quote_char=False, double_quote=False, escape_char=False,
                newlines_in_values=False, ignore_empty_lines=True, invalid_row_handler=skip,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(positions.values(), pa.string()),
                include_columns=list(positions.values()),
                strings_can_be_null=False, quoted_strings_can_be_null=False, check_utf8=False,
            ),
        )  # fmt: skip
    except pa.ArrowInvalid:
        return None
    count = table.num_rows
    expected = data.count(b"\n") - data.endswith(b"\n")
    if not invalid and count == expected and b"\n\n" not in data:
        return list(range(2, count + 2)), _ArrowColumns(table, positions, count), []
    del data  # rows of another width or empty lines: number the rows as _table does
    lines = _as_text(text).split("\n")
    keep, rejected = _line_widths(lines, width)
    numbers = [i + 1 for i in (range(len(lines)) if keep is None else keep)][1:]
    if len(numbers) != count:
        return None
    return numbers, _ArrowColumns(table, positions, count), rejected


def _time_reader(  # noqa: C901 - three readers and a cache
    time_format: str | None, tz: tzinfo
) -> Callable[[str], datetime]:
    """A cached reader of one export's times into UTC (exports repeat them many times).

    Day-first times are read by their day and their clock, each distinct one once (the UCI
    log has 53,164 distinct times on 661 days); any other shape goes through the full pattern,
    which reads (or refuses) it as it always did.
    """
    cache: dict[str, datetime] = {}
    # A zone that is UTC under another name gives naive times UTC itself: the same instants
    # without converting each one.
    zoned = UTC if getattr(tz, "key", None) in ("UTC", "Etc/UTC") or tz == UTC else tz
    days: dict[str, tuple[int, int, int] | None] = {}
    clocks: dict[str, tuple[int, int] | None] = {}

    def day_first(value: str) -> datetime:
        day, _, clock = value.partition(" ")
        ymd = days.get(day, _UNSEEN)
        if ymd is _UNSEEN:
            found = _DAY_RE.fullmatch(day)
            ymd = days[day] = None if found is None else (
                int(found[3]), int(found[2]), int(found[1]))  # fmt: skip
        hm = clocks.get(clock, _UNSEEN)
        if hm is _UNSEEN:
            found = _CLOCK_RE.fullmatch(clock)
            hm = clocks[clock] = None if found is None else (int(found[1]), int(found[2]))
        if ymd is not None and hm is not None:  # zoned as it is made (what replace would do)
            return datetime(*ymd, *hm, tzinfo=zoned)  # type: ignore[misc]
        match = _DAY_FIRST_RE.fullmatch(value)
        if match is None:
            raise ValueError(f"{value!r} is not a day-first time (29/2/2016 01:16)")
        d, m, year, hour, minute = map(int, match.groups())
        return datetime(year, m, d, hour, minute, tzinfo=zoned)

    def parse(value: str) -> datetime:
        if time_format == _DAY_FIRST:
            return day_first(value)
        if time_format is None:
            return datetime.fromisoformat(value.strip())
        return datetime.strptime(value.strip(), time_format)  # noqa: DTZ007 - zoned below

    def read(value: str) -> datetime:
        found = cache.get(value)
        if found is None:
            try:
                at = parse(value)
            except ValueError as exc:
                raise ValidationError(f"unreadable time: {exc}") from None
            at = at.replace(tzinfo=zoned) if at.tzinfo is None else at
            found = cache[value] = at if at.tzinfo is UTC else at.astimezone(UTC)
        return found

    return read


def _level_reader(scale: type[Level]) -> Callable[[str], Level]:
    cache: dict[str, Level] = {}

    def read(value: str) -> Level:
        found = cache.get(value)
        if found is None:
            found = cache[value] = scale.parse(value)
        return found

    return read


_TEXTS: Final = (
    "group", "assignee", "title", "caller", "category", "subcategory", "ci", "resolution_code",
)  # fmt: skip
"""The text columns of a row, read as they are (empty values as ``None``)."""


@attrs.define
class _Parsed:
    rows: int = 0
    rejected: list[RejectedRow] = attrs.Factory(list)
    engine: str = "python"
    """Which reader tokenized the text: ``"pyarrow"`` or ``"python"``."""
    incidents: dict[str, list[tuple[Any, ...]]] = attrs.Factory(dict)
    """Per incident id, its rows: ``(line, at, state label, (target, hold reason),
    sequence, updated by, info)``, ``info`` the row's impact, urgency, priority and
    ``_TEXTS``."""
    openings: dict[str, tuple[datetime | None, str | None, str | None]] = attrs.Factory(dict)
    """Per incident id: opened at, opened by, channel (of its first row)."""
    counts: dict[str, tuple[int, int | None, int | None]] = attrs.Factory(dict)
    """Per incident id: the line, reopen count and reassignment count of its last row."""
    cells: Counter[tuple[Level, Level, Priority]] = attrs.Factory(Counter)
    codes: set[str] = attrs.Factory(set)
    channels: set[str] = attrs.Factory(set)


def _count_or_none(value: str, empty: Mapping[str, None]) -> int | None:
    return None if value in empty or not value.strip().isdigit() else int(value)


def _count(value: str) -> int:
    if not value.strip().isdigit():
        raise ValidationError(f"{value!r} is not a count")
    return int(value)


def _parse(  # noqa: C901, PLR0912, PLR0915 - one pass over the columns, in order
    text: str | bytes,
    mapping: LogMapping,
    tz: tzinfo,
    scales: tuple[type[Level], type[Level]],
    engine: str = "auto",
) -> _Parsed:
    """Read the log column by column, rejecting the rows that cannot be read.

    Exports repeat their values (the UCI log has 53,165 distinct times in 283,424 time
    cells), so each distinct value of a column is read once and the column is mapped
    through the results at C speed. The cells come from pyarrow's C tokenizer when
    ``engine`` allows it and it can read the text (:func:`_arrow_table`), else from the
    pure-Python reader (:func:`_table`); everything after is the same code.
    """
    header = [name.strip() for name in _header(text)]
    if not header or header == [""]:
        raise ValidationError("the log is empty: no header row")
    position = {name: i for i, name in enumerate(header)}
    wanted = mapping.columns()
    missing = sorted({c for c in wanted.values() if c not in position})
    if missing:
        raise ValidationError(
            f"the log has no column {', '.join(map(repr, missing))}; its columns: "
            f"{', '.join(header)}"
        )
    place = {name: position[column] for name, column in wanted.items()}
    arrow = None if engine == "python" else _arrow_table(text, header, place.values())
    columns: _Columns | _ArrowColumns
    if arrow is None:
        _, lines, columns, rejected = _table(_as_text(text))
    else:
        lines, columns, rejected = arrow
    out = _Parsed(rejected=rejected, engine="python" if arrow is None else "pyarrow")
    count = len(lines)
    out.rows = count + len(rejected)
    if not count:
        return out
    empty = dict.fromkeys(mapping.empty | {""})
    reasons: dict[int, str] = {}

    def read(
        name: str, reader: Callable[[str], Any], default: Any = None, *, required: bool = False
    ) -> list[Any]:
        k = place.get(name)
        known: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for value in columns.distinct(k):
            if value in empty:
                if required:
                    errors[value] = "no value"
                known[value] = default
                continue
            try:
                known[value] = reader(value)
            except ItsmError as exc:
                errors[value] = str(exc)
                known[value] = None
        for i, value in columns.where(k, errors) if errors else ():
            reasons.setdefault(i, f"{wanted[name]}: {errors[value]}")
        return columns.mapped(k, known)

    def texts_of(name: str) -> list[str | None]:
        """The column's cells as they are, empty values as ``None``."""
        k = place.get(name)
        return columns.mapped(k, {v: empty.get(v, v) for v in columns.distinct(k)})

    id_column = place["id"]
    ids = columns.cells(id_column)
    if any(key in empty for key in columns.distinct(id_column)):
        for i, _ in columns.where(id_column, empty):
            reasons.setdefault(i, f"{mapping.id}: no incident id")
    states = {label: (target, mapping.hold_reasons.get(label) if target is _HOLD else None)
              for label, target in mapping.states.items()}  # fmt: skip
    known_states = ", ".join(map(repr, states))

    def state(label: str) -> tuple[IncidentState | None, str | None]:
        found = states.get(label)
        if found is None:
            raise ValidationError(f"unknown state {label!r}; the mapping knows {known_states}")
        return found

    targets = read("state", state, required=True)
    at_of = _time_reader(mapping.time_format, tz)
    updated = read("updated_at", at_of, required=True)
    impact_of, urgency_of = _level_reader(scales[0]), _level_reader(scales[1])
    impacts = read("impact", impact_of, impact_of("2"))
    urgencies = read("urgency", urgency_of, urgency_of("2"))
    priorities = read("priority", _level_reader(Priority))
    sequence = read("sequence", _count)
    texts = [texts_of(name) for name in _TEXTS]
    infos = list(zip(impacts, urgencies, priorities, *texts, strict=True))
    actors = texts_of("updated_by")
    state_labels = columns.cells(place["state"])
    table = list(zip(lines, updated, state_labels, targets, sequence, actors, infos,
                     strict=True))  # fmt: skip
    if reasons:
        for i in sorted(reasons):
            key = ids[i]
            out.rejected.append(RejectedRow(lines[i], reasons[i], None if key in empty else key))
        kept = [i for i in range(count) if i not in reasons]
        table = [table[i] for i in kept]
    else:
        kept = range(count)  # type: ignore[assignment]
    incidents, openings, counts = out.incidents, out.openings, out.counts
    kept_ids = ids if not reasons else [ids[i] for i in kept]
    n = len(table)
    starts = [0, *compress(range(1, n), map(ne, kept_ids, kept_ids[1:])), n] if n else [0]
    for start, end in pairwise(starts):  # a run of one incident's rows
        key = kept_ids[start]
        earlier = incidents.get(key)
        if earlier is None:
            incidents[key] = table[start:end]
        else:
            earlier.extend(table[start:end])
    # What only an incident's first or last row says is read for those rows alone.
    index_of = dict(zip(lines, range(count), strict=True))
    opened_at, opened_by, channel, reopens, reassigns = (
        columns.cells(place.get(name))
        for name in ("opened_at", "opened_by", "channel", "reopen_count", "reassignment_count")
    )
    for key in list(incidents):
        rows = incidents[key]
        while rows:
            first = index_of[rows[0][0]]
            try:
                at = None if opened_at[first] in empty else at_of(opened_at[first])
            except ItsmError as exc:
                out.rejected.append(RejectedRow(lines[first], f"{mapping.opened_at}: {exc}", key))
                del rows[0]
                continue
            openings[key] = (at, empty.get(opened_by[first], opened_by[first]),
                             empty.get(channel[first], channel[first]))  # fmt: skip
            break
        if not rows:
            del incidents[key]
            continue
        last = index_of[rows[-1][0]]
        counts[key] = (lines[last], _count_or_none(reopens[last], empty),
                       _count_or_none(reassigns[last], empty))  # fmt: skip
    if reasons:
        out.cells.update(r[6][:3] for rows in incidents.values() for r in rows)
    else:
        out.cells.update(zip(impacts, urgencies, priorities, strict=True))
    for cell in [c for c in out.cells if None in c]:
        del out.cells[cell]
    codes = texts[_TEXTS.index("resolution_code")]
    used = set(codes if not reasons else [codes[i] for i in kept])
    out.codes.update(code for code in used if code is not None)
    out.channels.update(o[2] for o in openings.values() if o[2] is not None)
    return out


# --------------------------------------------------------------------------- inference


def infer_matrix(
    observed: Mapping[tuple[Level, Level, Priority], int],
    impacts: type[Level] = Impact,
    urgencies: type[Level] = Urgency,
) -> tuple[PriorityMatrix, tuple[tuple[Level, Level], ...]]:
    """The matrix a log's rows follow, from counts of ``(impact, urgency, priority)``.

    Each cell takes the priority most rows give it (ties: the more urgent); cells no row
    shows take ITIL's default and are returned as unobserved. Rows that disagree with
    their cell are read as explicit priorities (overrides) by :func:`read_incident_log`.
    """
    votes: dict[tuple[Level, Level], Counter[Priority]] = {}
    for (impact, urgency, priority), n in observed.items():
        votes.setdefault((impact, urgency), Counter())[priority] += n
    default = PriorityMatrix.itil_default()
    rows: list[list[Priority | int]] = []
    unobserved = []
    for i, impact in enumerate(impacts):
        row: list[Priority | int] = []
        for j, urgency in enumerate(urgencies):
            counts = votes.get((impact, urgency))
            if counts:
                row.append(min(counts, key=lambda p, c=counts: (-c[p], p)))  # type: ignore[misc]
            else:
                unobserved.append((impact, urgency))
                itil = default.table.get((Impact(min(i + 1, 3)), Urgency(min(j + 1, 3))))
                row.append(itil or Priority.P5)
        rows.append(row)
    return PriorityMatrix.from_rows(impacts, urgencies, rows), tuple(unobserved)


def import_workflow(
    *,
    resolution_codes: Iterable[str] = (),
    hold_reasons: Iterable[str] = (),
    channels: Iterable[str] = (),
    name: str = "imported",
) -> Workflow:
    """The incident workflow imported logs run on: the desk's values, and what logs show.

    It is :func:`~itsmcore.incident.incident_workflow` with the log's resolution codes,
    hold reasons and channels, ``reopen_closed=True`` (exports reopen closed incidents),
    and two rows real logs need: ``close`` from New, In Progress and On Hold (an incident
    closed without a resolution; each is reported as an anomaly) and ``comment`` while
    Closed (the export's updates to closed incidents).
    """
    base = incident_workflow(
        sorted({normalized(c) for c in resolution_codes}),
        hold_reasons=sorted({normalized(r) for r in hold_reasons} - set(HoldReason)),
        channels=sorted({normalized(c) for c in channels} - set(Channel)),
        reopen_closed=True,
        name=name,
    )
    return base.derive(
        name=name,
        add_transitions=[
            Transition("close", (_NEW, _WORK, _HOLD), _CLOSED),
            Transition("comment", _CLOSED),
        ],
    )


# --------------------------------------------------------------------------- building


def _slot_maker(cls: type[Event]) -> Callable[..., Event]:
    """``make(at, by, state, *values)``: an event of ``cls`` from its fields' values in order.

    What ``cls(...)`` builds, without its converters: the caller passes ``at`` already in
    UTC, ``by`` already checked by the event's own actor check and ``state`` as a plain
    string — what the converters return for such values, so the event is equal. A class
    with any other converter or a validator (or without slots) is built through its
    ``__init__``.
    """
    fields = attrs.fields(cls)
    names = [f.name for f in fields]
    plain = (
        names[:3] == ["at", "by", "state"]
        and all(f.converter is None and f.validator is None for f in fields[3:])
        and all(f.validator is None for f in fields[:3])
        and all(isinstance(getattr(cls, n, None), MemberDescriptorType) for n in names)
    )
    if not plain:

        def build(*values: Any) -> Event:
            return cls(**dict(zip(names, values, strict=True)))

        return build
    setters = {f"set_{n}": getattr(cls, n).__set__ for n in names}
    body = "".join(f"    set_{n}(e, {n})\n" for n in names)
    source = f"def make({', '.join(names)}):\n    e = new(cls)\n{body}    return e\n"
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls, **setters}
    exec(compile(source, f"<itsmcore import {cls.__name__}>", "exec"), namespace)  # noqa: S102 - attrs field names are identifiers
    make: Callable[..., Event] = namespace["make"]
    return make


class _Verbs:
    """An incident's history built by calling its verbs, one record per event.

    The reference way: every change is a real verb call on a real record.
    """

    def __init__(self, opened: Incident) -> None:
        self.record = opened
        self.state: str = opened.state
        self.last = opened.opened_at
        self.count = 1

    def fire(self, trigger: str, at: datetime, by: str, args: dict[str, Any]) -> None:
        record = getattr(self.record, trigger)(at=at, by=by, **args)
        self.record, self.state, self.last = record, record.state, at
        self.count = len(record.history)

    def result(self) -> Incident:
        return self.record


class _Makers:
    """Each event the import makes, its values checked as its verb checks them.

    Every value goes through the verb's own validator once per distinct value (errors are
    not kept, so a bad value fails each time as the verb would); the event is then made by
    setting its fields (:func:`_slot_maker`).
    """

    def __init__(self, workflow: Workflow, matrix: PriorityMatrix) -> None:
        self.workflow, self.matrix = workflow, matrix
        self._seen: dict[tuple[str, Any], Any] = {}
        self.actors: set[str] = set()
        own = Incident._events
        make = {
            name: _slot_maker(cls)
            for name, cls in (
                ("opened", IncidentOpened), ("started", IncidentStarted),
                ("held", IncidentHeld), ("resumed", IncidentResumed),
                ("resolved", IncidentResolved), ("closed", IncidentClosed),
                ("canceled", own[Canceled]), ("reopened", own[Reopened]),
                ("commented", own[Commented]), ("assigned", own[Assigned]),
                ("reprioritized", own[Reprioritized]),
            )
        }  # fmt: skip
        self.make = make
        self.note = text(_NOTE, "text")  # every fixed text of the import is this one
        self.destinations: dict[tuple[str, str], str | None] = {}
        wf = workflow
        self._opening_checks: tuple[Callable[[Any], Any], ...] = (
            lambda v: text(v, "title"),
            lambda v: label(v, "caller"),
            lambda v: wf.choice("channel", v, "channel"),
            *(partial(optional_label, name=name) for name in ("ci", "category", "subcategory")),
            self._priority_fields,
            *(partial(optional_label, name=name) for name in ("assignment_group", "assignee")),
        )
        """The checks ``Incident.open`` gives an opening's fields, in its order."""
        self._opening_caches: tuple[dict[Any, Any], ...] = tuple({} for _ in self._opening_checks)
        self.by_trigger = self._makers()

    def destination(self, state: str, trigger: str) -> str | None:
        """The state ``trigger`` leads to from ``state``, as the events store it (a string)."""
        found = self.workflow.destination(state, trigger)
        found = self.destinations[state, trigger] = None if found is None else str(found)
        return found

    def once(self, kind: str, value: Any, check: Callable[[Any], Any]) -> Any:
        """``check(value)``, computed once per distinct value (errors are not kept)."""
        key = (kind, value)
        found = self._seen.get(key, _UNSEEN)
        if found is _UNSEEN:
            found = self._seen[key] = check(value)
        return found

    def opening(
        self, *, key: str, title: str, caller: str, channel: str, category: str | None,
        subcategory: str | None, ci: str | None, group: str | None, assignee: str | None,
        impact: Level, urgency: Level, priority: Priority | None, at: datetime, by: str,
    ) -> IncidentOpened:  # fmt: skip
        """The event ``Incident.open`` would record, its values checked as it checks them.

        Each value after the id is checked once per distinct value of its field; with an
        actor not yet seen the event is built through its ``__init__``, whose converters
        check it.
        """
        wf = self.workflow
        ident = label(key, "id")
        values = (title, caller, channel, ci, category, subcategory, impact, urgency, priority,
                  group, assignee)  # fmt: skip
        checked = self._opening_fields(values)
        if by in self.actors:
            return self.make["opened"](at, by, str(wf.initial), ident, wf.name, *checked)  # type: ignore[return-value]
        names = [f.name for f in attrs.fields(IncidentOpened)][5:]
        event = IncidentOpened(
            at=at, by=by, state=wf.initial, id=ident, workflow=wf.name,
            **dict(zip(names, checked, strict=True)),
        )  # fmt: skip
        self.actors.add(event.by)
        return event

    def _opening_fields(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """``IncidentOpened``'s fields after its workflow, checked in ``Incident.open``'s order.

        Each field's value is checked once per distinct value of that field (an export
        repeats its callers, groups and symptoms across thousands of openings; the UCI log
        has 23,587 distinct combinations in 24,918 openings, so combinations are not kept).
        """
        title, caller, channel, ci, category, subcategory, impact, urgency, priority = values[:9]
        checked = []
        for value, cache, check in zip(
            (title, caller, channel, ci, category, subcategory, (impact, urgency, priority),
             *values[9:]),
            self._opening_caches, self._opening_checks, strict=True,
        ):  # fmt: skip
            found = cache.get(value, _UNSEEN)
            if found is _UNSEEN:
                found = cache[value] = check(value)
            checked.append(found)
        title, caller, channel, ci, category, subcategory, p, group, assignee = checked
        return (title, "", caller, channel, None, ci, category, subcategory, p["impact"],
                p["urgency"], p["priority"], p["priority_overridden"], group, assignee)  # fmt: skip

    def _priority_fields(self, key: tuple[Level, Level, Priority | None]) -> dict[str, Any]:
        return Incident._priority_fields(key[0], key[1], key[2], self.matrix)

    def _makers(  # noqa: C901 - a table of small makers
        self,
    ) -> dict[str, Callable[[datetime, str, str, tuple[Any, ...]], Event]]:
        """Per trigger, ``make(at, by, state, values)``: its event, its values checked.

        ``values`` are the import's for the trigger (as :meth:`verb_args` reads them), each
        checked as the verb checks it; ``by`` is one the events' own check took already (see
        ``_Builder._in_bulk``).
        """
        make, once, wf, note = self.make, self.once, self.workflow, self.note
        commented, started, resumed, closed = (
            make["commented"], make["started"], make["resumed"], make["closed"])  # fmt: skip
        canceled, reopened, held, resolved = (
            make["canceled"], make["reopened"], make["held"], make["resolved"])  # fmt: skip
        assigned, reprioritized = make["assigned"], make["reprioritized"]
        labels: dict[Any, str | None] = {}

        def optional(value: str | None, name: str) -> str | None:
            found = labels.get(value, _UNSEEN)
            if found is _UNSEEN:  # the same check for a group and an assignee
                found = labels[value] = optional_label(value, name)
            return found  # type: ignore[return-value]

        def comment(at: datetime, by: str, state: str, _v: tuple[Any, ...]) -> Event:
            return commented(at, by, state, note, False)  # noqa: FBT003

        def assign(at: datetime, by: str, state: str, v: tuple[Any, ...]) -> Event:
            group, assignee, regroup = v
            assignee = optional(assignee, "assignee")
            if regroup:
                group = optional(group, "group")
                cleared: tuple[str, ...] = ("group",) if group is None else ()
            else:
                group, cleared = None, ()
            cleared = (*cleared, "assignee") if assignee is None else cleared
            return assigned(at, by, state, group, assignee, cleared)

        def reprioritize(at: datetime, by: str, state: str, v: tuple[Any, ...]) -> Event:
            fields = once("priority", v, self._priority_fields)
            return reprioritized(
                at, by, state, fields["impact"], fields["urgency"], fields["priority"],
                fields["priority_overridden"], note,
            )  # fmt: skip

        def start(at: datetime, by: str, state: str, _v: tuple[Any, ...]) -> Event:
            return started(at, by, state)

        def resume(at: datetime, by: str, state: str, _v: tuple[Any, ...]) -> Event:
            return resumed(at, by, state, None)

        def hold(at: datetime, by: str, state: str, v: tuple[Any, ...]) -> Event:
            reason = once("hold", v[0], lambda r: wf.choice("hold_reason", r, "hold reason"))
            return held(at, by, state, reason)

        def resolve(at: datetime, by: str, state: str, v: tuple[Any, ...]) -> Event:
            code = once("code", v[0], lambda c: wf.choice(
                "resolution_code", label(c, "code"), "resolution code"))  # fmt: skip
            return resolved(at, by, state, code, note, None)

        def close(at: datetime, by: str, state: str, _v: tuple[Any, ...]) -> Event:
            return closed(at, by, state, False, None)  # noqa: FBT003

        def cancel(at: datetime, by: str, state: str, _v: tuple[Any, ...]) -> Event:
            return canceled(at, by, state, note)

        def reopen(at: datetime, by: str, state: str, _v: tuple[Any, ...]) -> Event:
            return reopened(at, by, state, note)

        return {
            "comment": comment, "assign": assign, "reprioritize": reprioritize,
            "start": start, "resume": resume, "hold": hold, "resolve": resolve,
            "close": close, "cancel": cancel, "reopen": reopen,
        }  # fmt: skip

    def verb_args(  # noqa: PLR0911 - one return per trigger
        self, trigger: str, values: tuple[Any, ...]
    ) -> dict[str, Any]:
        """The verb's arguments for the import's ``values`` of ``trigger``."""
        if trigger == "assign":
            group, assignee, regroup = values
            return {"group": group, "assignee": assignee} if regroup else {"assignee": assignee}
        if trigger == "reprioritize":
            impact, urgency, priority = values
            return {"impact": impact, "urgency": urgency, "priority": priority,
                    "matrix": self.matrix, "reason": _NOTE}  # fmt: skip
        if trigger == "update":
            return dict(values)
        if trigger == "comment":
            return {"text": _NOTE}
        if trigger == "resolve":
            return {"code": values[0], "notes": _NOTE}
        if trigger == "hold":
            return {"reason": values[0]}
        if trigger in ("cancel", "reopen"):
            return {"reason": _NOTE}
        return {}


@attrs.define
class _Builder:
    """Turns an incident's rows into the changes that explain them, noting anomalies."""

    mapping: LogMapping
    matrix: PriorityMatrix
    workflow: Workflow
    verbs: bool = False
    anomalies: list[Anomaly] = attrs.Factory(list)
    makers: _Makers = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.makers = _Makers(self.workflow, self.matrix)
        used = {"start", "resume", "hold", "resolve", "close", "cancel", "reopen", "comment",
                "assign", "reprioritize"}  # fmt: skip
        if any(row.guards for row in self.workflow.transitions if row.trigger in used):
            self.verbs = True  # guards read the record: only verbs have one to show them

    def note(self, key: str, line: int, kind: AnomalyKind, detail: str) -> None:
        self.anomalies.append(Anomaly(key, line, kind, detail))

    def build(
        self,
        key: str,
        rows: list[tuple[Any, ...]],
        opening: tuple[datetime | None, str | None, str | None],
        counts: tuple[int, int | None, int | None],
    ) -> tuple[Incident, list[int]]:
        """The incident of ``rows``, and the line each event of its history came from."""
        if self.verbs:
            incident, sources = self._through_verbs(key, rows, opening)
        else:
            incident, sources = self._in_bulk(key, rows, opening)
        self._check_counts(incident, counts)
        return incident, sources

    def _opening_values(
        self, key: str, rows: list[tuple[Any, ...]], opening: tuple[Any, ...]
    ) -> tuple[dict[str, Any], Priority]:
        """The opening's values (``Incident.open``'s arguments) and the first row's priority."""
        opened_at, opener, channel = opening
        _, at, _, _, _, by, info = rows[0]
        impact, urgency, priority, group, assignee, title, caller, category, subcategory, ci = (
            info[:10])  # fmt: skip
        table = self.matrix.table
        if priority is None:
            priority = table[impact, urgency]
        values = {
            "title": title or key, "caller": caller or _UNKNOWN,
            "channel": channel or Channel.PORTAL, "category": category,
            "subcategory": subcategory, "ci": ci, "impact": impact, "urgency": urgency,
            "at": opened_at or at, "by": opener or by or _UNKNOWN, "group": group,
            "assignee": assignee,
            "priority": None if table[impact, urgency] is priority else priority,
        }  # fmt: skip
        return values, priority

    # One loop over an incident's rows, kept whole: it runs once per row of the export, and
    # a method call per step of it cost a tenth of the import.
    def _in_bulk(  # noqa: C901, PLR0912, PLR0915
        self, key: str, rows: list[tuple[Any, ...]], opening: tuple[Any, ...]
    ) -> tuple[Incident, list[int]]:
        """The incident built as a list of events, each folded into one record as it comes.

        Each event is checked as its verb checks it — the transition against the workflow's
        table, every value through the verbs' validators (each distinct value once), time
        never going backwards, the history's length cap — and applied by the practice's own
        appliers, in place, as ``Incident.replay`` folds a history. A change this builder has
        no shortcut for (an ``update``), or that the workflow refuses, runs its real verb on
        the record as it is so far (which raises its own error). The import's tests check
        that this and the verbs' path give equal incidents.
        """
        makers, table, mapping, note = self.makers, self.matrix.table, self.mapping, self.note
        workflow, destination = self.workflow, makers.destination
        values, priority = self._opening_values(key, rows, opening)
        impact, urgency = values["impact"], values["urgency"]
        group, assignee = values["group"], values["assignee"]
        title, caller = values["title"], values["caller"]
        category, subcategory, ci = values["category"], values["subcategory"], values["ci"]
        first_event = makers.opening(key=key, **values)
        record = Incident._opened(first_event, workflow)
        fields = record.__dict__
        appliers, state_of = Incident._appliers, Incident._state_of
        events: list[Event] = [first_event]
        sources = [rows[0][0]]
        state: str = first_event.state
        last = previous_at = first_event.at
        reason_now: str | None = None
        last_seq: int | None = None
        synced = rows[0][6]  # the values the incident has (a row with them changes none)

        by_trigger, actors, to_of = makers.by_trigger, makers.actors, makers.destinations

        def fire(trigger: str, at: datetime, by: str, args: tuple[Any, ...]) -> bool:
            """Record ``trigger``'s event; a refusal is noted. Whether an event was added."""
            nonlocal state, last
            try:
                to = to_of.get((state, trigger), _UNSEEN)
                if to is _UNSEEN:
                    to = destination(state, trigger)
                make = by_trigger.get(trigger)
                if (
                    to is not None
                    and make is not None
                    and by in actors
                    and (len(events) < MAX_EVENTS)
                ):
                    event = make(at, by, to, args)  # type: ignore[arg-type]
                else:  # through the verb, on the record as it is (it raises its own error):
                    # an update, a change the workflow refuses, an actor not seen yet
                    so_far = object.__new__(Incident)
                    so_far.__dict__.update(fields, history=tuple(events))
                    done = getattr(so_far, trigger)(at=at, by=by, **makers.verb_args(trigger, args))
                    if done is so_far:
                        return False  # an update that changes nothing
                    event = done.history[-1]
                    actors.add(by)
            except ItsmError as exc:
                note(key, line, AnomalyKind.REFUSED, f"{trigger}: {exc}")
                return False
            events.append(event)
            fields.update(appliers[type(event)](record, event))
            state = event.state
            fields["state"] = state_of.get(state, state)
            last = at
            return True

        first = True
        for line, at, state_label, (target, reason), seq, by, info in rows:
            by = by or _UNKNOWN  # noqa: PLW2901
            if at < previous_at:
                when = f"; recorded at {last.isoformat()}" if at < last else ""
                back = f"updated at {at.isoformat()}, before {previous_at.isoformat()}{when}"
                note(key, line, AnomalyKind.TIME_BACKWARDS, back)
            previous_at = at
            at = max(at, last)  # noqa: PLW2901
            if seq is not None:
                if last_seq is not None and seq < last_seq:
                    note(key, line, AnomalyKind.SEQUENCE_BACKWARDS,
                         f"{mapping.sequence} {seq} after {last_seq}")  # fmt: skip
                last_seq = seq
            current = state
            if target is None:
                note(key, line, AnomalyKind.UNKNOWN_STATE,
                     f"state {state_label!r}: the incident stays {current}")  # fmt: skip
                target = current  # noqa: PLW2901
            if current == _CLOSED and target == _CLOSED:
                note(key, line, AnomalyKind.UPDATED_WHILE_CLOSED, "an update after closure")
            before = len(events)
            move = None  # decided first, as the verbs' path does (its notes come first)
            if target != current or (target == _HOLD and reason != reason_now):
                move = self._move(key, line, current, target)
            if current in (_RESOLVED, _CLOSED) and target not in (current, _CLOSED):
                fire("reopen", at, by, ())
            if info != synced:
                (r_impact, r_urgency, r_priority, r_group, r_assignee, r_title, r_caller,
                 r_category, r_subcategory, r_ci) = info[:10]  # fmt: skip
                applied = True
                if r_group != group:
                    if fire("assign", at, by, (r_group, r_assignee, True)):
                        group, assignee = r_group, r_assignee
                    else:
                        applied = False
                elif r_assignee != assignee:
                    if fire("assign", at, by, (None, r_assignee, False)):
                        assignee = r_assignee
                    else:
                        applied = False
                wanted = table[r_impact, r_urgency] if r_priority is None else r_priority
                if (r_impact, r_urgency, wanted) != (impact, urgency, priority):
                    explicit = None if table[r_impact, r_urgency] is wanted else wanted
                    if fire("reprioritize", at, by, (r_impact, r_urgency, explicit)):
                        impact, urgency, priority = r_impact, r_urgency, wanted
                    else:
                        applied = False
                if (r_title, r_category, r_subcategory, r_ci) != (
                    title,
                    category,
                    subcategory,
                    ci,
                ) or (r_caller is not None and r_caller != caller):
                    edits = tuple(
                        (name, new)
                        for name, new, old in (
                            ("title", r_title or key, title),
                            ("caller", r_caller or caller, caller),
                            ("category", r_category, category),
                            ("subcategory", r_subcategory, subcategory),
                            ("ci", r_ci, ci),
                        )
                        if new != old
                    )
                    if edits:
                        if fire("update", at, by, edits):
                            edited = dict(edits)
                            title = edited.get("title", title)
                            caller = edited.get("caller", caller)
                            category = edited.get("category", category)
                            subcategory = edited.get("subcategory", subcategory)
                            ci = edited.get("ci", ci)
                        else:
                            applied = False
                synced = info if applied else None
            if move is not None:
                args = (reason,) if move == "hold" else (info[10] or mapping.missing_code,)
                if fire(move, at, by, args):
                    if move == "hold":
                        reason_now = reason
                    elif move in ("resume", "resolve", "cancel"):
                        reason_now = None
            if len(events) == before and not first:
                fire("comment", at, by, ())
            sources.extend([line] * (len(events) - len(sources)))
            first = False
        fields["history"] = tuple(events)
        return record, sources

    def _through_verbs(  # noqa: C901, PLR0912, PLR0915
        self, key: str, rows: list[tuple[Any, ...]], opening: tuple[Any, ...]
    ) -> tuple[Incident, list[int]]:
        """The incident built through its verbs, one record per event: the reference."""
        matrix, table, mapping, note = self.matrix, self.matrix.table, self.mapping, self.note
        values, priority = self._opening_values(key, rows, opening)
        impact, urgency = values["impact"], values["urgency"]
        group, assignee = values.pop("group"), values.pop("assignee")
        title, caller = values["title"], values["caller"]
        category, subcategory, ci = values["category"], values["subcategory"], values["ci"]
        explicit = values.pop("priority")
        history = _Verbs(Incident.open(
            id=key, **values, assignment_group=group, assignee=assignee, priority=explicit,
            matrix=matrix, workflow=self.workflow,
        ))  # fmt: skip
        sources = [rows[0][0]]
        reason_now: str | None = None
        previous_at = history.last
        last_seq: int | None = None
        first = True
        for row in rows:
            line, at, label, (target, reason), seq, by, info = row
            (r_impact, r_urgency, r_priority, r_group, r_assignee, r_title, r_caller,
             r_category, r_subcategory, r_ci, code) = info[:11]  # fmt: skip
            by = by or _UNKNOWN
            if at < previous_at:
                when = f"; recorded at {history.last.isoformat()}" if at < history.last else ""
                back = f"updated at {at.isoformat()}, before {previous_at.isoformat()}{when}"
                note(key, line, AnomalyKind.TIME_BACKWARDS, back)
            previous_at = at
            at = max(at, history.last)
            if seq is not None:
                if last_seq is not None and seq < last_seq:
                    note(key, line, AnomalyKind.SEQUENCE_BACKWARDS,
                         f"{mapping.sequence} {seq} after {last_seq}")  # fmt: skip
                last_seq = seq
            current = history.state
            if target is None:
                note(key, line, AnomalyKind.UNKNOWN_STATE,
                     f"state {label!r}: the incident stays {current}")  # fmt: skip
                target = current
            if current == _CLOSED and target == _CLOSED:
                note(key, line, AnomalyKind.UPDATED_WHILE_CLOSED, "an update after closure")
            changes: list[tuple[str, dict[str, Any]]] = []
            if current in (_RESOLVED, _CLOSED) and target not in (current, _CLOSED):
                changes.append(("reopen", {"reason": _NOTE}))
            if r_group != group:
                changes.append(("assign", {"group": r_group, "assignee": r_assignee}))
            elif r_assignee != assignee:
                changes.append(("assign", {"assignee": r_assignee}))
            wanted = table[r_impact, r_urgency] if r_priority is None else r_priority
            if (r_impact, r_urgency, wanted) != (impact, urgency, priority):
                explicit = None if table[r_impact, r_urgency] is wanted else wanted
                changes.append(("reprioritize", {
                    "impact": r_impact, "urgency": r_urgency, "priority": explicit,
                    "matrix": matrix, "reason": _NOTE}))  # fmt: skip
            edits: dict[str, str | None] = {}
            if (r_title, r_category, r_subcategory, r_ci) != (title, category, subcategory, ci) or (
                r_caller is not None and r_caller != caller
            ):
                edits = {
                    name: new
                    for name, new, old in (
                        ("title", r_title or key, title),
                        ("caller", r_caller or caller, caller),
                        ("category", r_category, category),
                        ("subcategory", r_subcategory, subcategory),
                        ("ci", r_ci, ci),
                    )
                    if new != old
                }
                if edits:
                    changes.append(("update", edits))
            if target != current or (target == _HOLD and reason != reason_now):
                trigger = self._move(key, line, current, target)
                if trigger == "hold":
                    changes.append((trigger, {"reason": reason}))
                elif trigger == "resolve":
                    changes.append((trigger, {"code": code or mapping.missing_code,
                                              "notes": _NOTE}))  # fmt: skip
                elif trigger == "cancel":
                    changes.append((trigger, {"reason": _NOTE}))
                elif trigger is not None:
                    changes.append((trigger, {}))
            before = history.count
            for trigger, args in changes:
                try:
                    history.fire(trigger, at, by, args)
                except ItsmError as exc:
                    note(key, line, AnomalyKind.REFUSED, f"{trigger}: {exc}")
                    continue
                if trigger == "assign":
                    group, assignee = args.get("group", group), args["assignee"]
                elif trigger == "reprioritize":
                    impact, urgency, priority = r_impact, r_urgency, wanted
                elif trigger == "update":
                    title = edits.get("title", title)
                    caller = edits.get("caller", caller)
                    category = edits.get("category", category)
                    subcategory = edits.get("subcategory", subcategory)
                    ci = edits.get("ci", ci)
                elif trigger == "hold":
                    reason_now = reason
                elif trigger in ("resume", "resolve", "cancel"):
                    reason_now = None
            if history.count == before and not first:
                try:
                    history.fire("comment", at, by, {"text": _NOTE})
                except ItsmError as exc:
                    note(key, line, AnomalyKind.REFUSED, f"comment: {exc}")
            sources.extend([line] * (history.count - len(sources)))
            first = False
        return history.result(), sources

    def _move(self, key: str, line: int, current: str, target: str) -> str | None:
        """The trigger moving the incident from ``current`` to ``target``, or None.

        What a desk should not do (closing unresolved, moving back) is noted.
        """
        pair = (current, target)
        found = _MOVES.get(pair)
        if found is None:
            found = _MOVES[pair] = _move_of(current, target)
        trigger, anomaly = found
        if anomaly is not None:
            self.note(key, line, *anomaly)
        return trigger

    def _check_counts(self, incident: Incident, counts: tuple[int, int | None, int | None]) -> None:
        line, reopens, reassigns = counts
        for column, ours, theirs in (
            (self.mapping.reopen_count, incident.reopen_count, reopens),
            (self.mapping.reassignment_count, incident.reassignment_count, reassigns),
        ):
            if theirs is not None and theirs != ours:
                self.note(incident.id, line, AnomalyKind.COUNT_DIFFERS,
                          f"{column} {ours} here, {theirs} in the export")  # fmt: skip


def _move_of(  # noqa: PLR0911 - one return per target state
    current: str, target: str
) -> tuple[str | None, tuple[AnomalyKind, str] | None]:
    """The trigger moving an incident from ``current`` to ``target`` (or None).

    With it, what a desk should not do (closing unresolved, moving back), to be noted.
    """
    if target == _WORK:
        if current == _NEW:
            return "start", None
        if current == _HOLD:
            return "resume", None
        return None, None  # reopened: back at work already
    if target == _HOLD:
        return "hold", None
    if target == _RESOLVED:
        return "resolve", None
    if target == _CLOSED:
        if current != _RESOLVED:
            return "close", (AnomalyKind.CLOSED_UNRESOLVED,
                             f"closed from {current} without a resolution")  # fmt: skip
        return "close", None
    if target == _CANCELED:
        return "cancel", None
    moved = f"the export moves it from {current} back to {target}; it stays {current}"
    return None, (AnomalyKind.REFUSED, moved)


_MOVES: dict[tuple[str, str], tuple[str | None, tuple[AnomalyKind, str] | None]] = {}
""":func:`_move_of` of each pair of states, kept as it is asked (states are few)."""
_ENGINES: Final = ("auto", "pyarrow", "python")
_UNKNOWN: Final = "unknown"
"""The caller or actor of a row that names none."""


def _collect_again() -> None:
    """Turn the cyclic collector back on, the import's objects counted as old ones.

    Enabled as it was, the collector's first pass would walk every object the import made
    (all still young to it: a tenth of the UCI log's import). Frozen and unfrozen first,
    they join the oldest generation, as long-lived objects do, and are walked only by its
    full passes. Done only when nothing else is frozen, so no one else's frozen objects
    are let go.
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
    gc.enable()


# --------------------------------------------------------------------------- the entry point


def read_incident_log(
    source: str | PathLike[str] | TextIO,
    *,
    zone: str | tzinfo,
    mapping: LogMapping = SERVICENOW,
    matrix: PriorityMatrix | None = None,
    workflow: Workflow | None = None,
    member: str | None = None,
    engine: str = "auto",
    _verbs: bool = False,
) -> ImportResult:
    """Read an incident event log into incidents with their full histories.

    Args:
        source: a path to a ``.csv`` file or to a ``.zip`` holding one (``member`` names it
            if there are several), or a text stream.
        zone: the zone the export's naive times are wall times of (an IANA name, an offset
            such as ``"+01:00"``, or a tzinfo). Required: an export rarely says, and a
            wrong guess shifts every SLA. Times that name their offset keep it.
        mapping: the columns and states of the export (:data:`SERVICENOW` by default).
        matrix: impact x urgency -> priority. By default it is inferred from the rows (see
            :func:`infer_matrix`); rows whose priority differs from it are read as
            explicit priorities.
        workflow: the incidents' workflow. By default :func:`import_workflow` with the
            log's own resolution codes, hold reasons and channels.
        member: the CSV file to read inside a ``.zip``.
        engine: which reader splits the text into cells. ``"auto"`` (the default) uses
            pyarrow's C tokenizer when pyarrow is installed (the ``arrow`` extra) and the
            text has no quote and no carriage return, the pure-Python reader otherwise;
            ``"pyarrow"`` asks for pyarrow (an error without it; text it cannot read
            still goes through the csv module); ``"python"`` never uses it. Both give
            the same incidents, sources and report (``report.engine`` says which read).

    Returns:
        The incidents, each event's source line, the workflow and an :class:`ImportReport`.

    Raises:
        ValidationError: the source cannot be read, is empty, or lacks a mapped column;
            an unknown ``engine``, or ``"pyarrow"`` without pyarrow installed.
    """
    if engine not in _ENGINES:
        raise ValidationError(f"engine must be one of {', '.join(_ENGINES)}, not {engine!r}")
    if engine == "pyarrow" and _arrow() is None:
        raise ValidationError("engine='pyarrow' needs pyarrow: pip install 'itsmcore[arrow]'")
    tz = _zone(zone)
    text = _read_text(source, member)
    scales = (matrix.impacts, matrix.urgencies) if matrix is not None else (Impact, Urgency)
    # The import builds hundreds of thousands of small objects that all stay alive: the
    # cyclic collector would walk them again and again (it doubled the UCI log's import
    # time). Nothing here makes cycles; the collector runs again as it was afterwards.
    collecting = gc.isenabled()
    gc.disable()
    rows_read = 0
    try:
        parsed = _parse(text, mapping, tz, scales, engine)
        del text
        unobserved: tuple[tuple[Level, Level], ...] = ()
        if matrix is None:
            matrix, unobserved = infer_matrix(parsed.cells)
        if workflow is None:
            workflow = import_workflow(
                resolution_codes=[*parsed.codes, mapping.missing_code],
                hold_reasons=mapping.hold_reasons.values(),
                channels=parsed.channels,
            )
        builder = _Builder(mapping, matrix, workflow, verbs=_verbs)
        incidents: dict[str, Incident] = {}
        sources: dict[str, tuple[int, ...]] = {}
        rejected = parsed.rejected
        events = 0
        for key, rows in parsed.incidents.items():
            try:
                incident, lines = builder.build(key, rows, parsed.openings[key], parsed.counts[key])
            except ItsmError as exc:  # the opening itself was refused
                reason = f"the incident cannot open: {exc}"
                rejected.extend(RejectedRow(row[0], reason, key) for row in rows)
                continue
            incidents[key] = incident
            sources[key] = tuple(lines)
            events += len(lines)
        rows_read, engine = parsed.rows, parsed.engine
        del parsed  # its rows are freed before the collector runs again, not walked by it
    finally:
        if collecting:
            _collect_again()
    rejected.sort(key=lambda r: r.line)
    report = ImportReport(
        rows=rows_read,
        incidents=len(incidents),
        events=events,
        rejected=tuple(rejected),
        anomalies=tuple(builder.anomalies),
        matrix=matrix,
        unobserved=unobserved,
        engine=engine,
    )
    return ImportResult(incidents=incidents, sources=sources, workflow=workflow, report=report)
