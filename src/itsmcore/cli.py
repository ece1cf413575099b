"""The ``itsmcore`` command: a demo desk, imports of real exports, reports, SLA stories.

    itsmcore demo [--folder DIR]                 a generated month in SQLite, its tables
    itsmcore import FILE --store URL --zone TZ   an incident event log into a store
    itsmcore report --store URL --out FILE       a self-contained HTML report
    itsmcore sla explain ID --store URL          one record's SLA clocks as a timeline

Stores are named by URL: ``sqlite:///desk.db`` (a relative path), ``sqlite:////tmp/desk.db``
(an absolute one), or a PostgreSQL ``postgresql://user@host/db``. A mistake of the user's
(a missing file, an unknown record, a malformed option) is one line on stderr and exit
status 1; a wrong command line is exit status 2 with the usage; success is 0.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from itsmcore._time import zone
from itsmcore.calendar import BusinessCalendar
from itsmcore.errors import ItsmError, NotFoundError, ValidationError
from itsmcore.priority import Priority
from itsmcore.sample import OFFICE, sample_month
from itsmcore.sla import SLADefinition, evaluate_many

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["main"]

TARGETS: dict[Priority, timedelta] = {
    Priority.P1: timedelta(hours=4),
    Priority.P2: timedelta(hours=8),
    Priority.P3: timedelta(hours=24),
    Priority.P4: timedelta(hours=40),
    Priority.P5: timedelta(hours=80),
}
"""Resolution targets in business hours unless ``--targets`` says otherwise."""


class UserError(Exception):
    """A mistake in what the user asked for: reported in one line, exit status 1."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    try:
        args.run(args, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # `itsmcore demo | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a pipe's writer killed by SIGPIPE
    except (UserError, ItsmError, OSError) as exc:
        sys.stderr.write(f"itsmcore: {_message(exc)}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _message(exc: BaseException) -> str:
    if isinstance(exc, NotFoundError):
        return str(exc.args[0]) if exc.args else "not found"
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}"
    return str(exc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="itsmcore",
        description="IT service management on the command line: a demo desk, SLA clocks.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="generate a month of incidents, problems and changes; print SLA and KPI tables",
        description="Generate a realistic month of a service desk into a SQLite store and "
        "print its SLA compliance and key figures.",
    )
    demo.add_argument("--folder", type=Path, help="keep the store here (default: a temporary one)")
    demo.add_argument("--seed", type=int, default=0, help="the same seed gives the same month")
    demo.add_argument("--incidents", type=_positive, default=300, help="how many (default 300)")
    demo.set_defaults(run=_demo)

    load = commands.add_parser(
        "import",
        help="read an incident event log (a ServiceNow-style export) into a store",
        description="Read an incident event log — one row per update, such as a ServiceNow "
        "export (.csv or a .zip holding one) — into a store, every incident with its whole "
        "history. Rows that cannot be read are reported with their line and reason.",
    )
    load.add_argument("file", type=Path, help="the export: a .csv file or a .zip holding one")
    _store_option(load)
    load.add_argument(
        "--zone", required=True,
        help="the time zone the export's naive times are in, e.g. Europe/Lisbon or UTC",
    )  # fmt: skip
    load.set_defaults(run=_import)

    report = commands.add_parser(
        "report",
        help="write a self-contained HTML report of a store's incidents",
        description="Write a self-contained HTML report (key figures, SLA compliance by "
        "priority and month, backlog, time to resolve, recurring-incident candidates with "
        "their yearly cost) of the incidents in a store.",
    )
    _store_option(report)
    report.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    report.add_argument(
        "--at", type=_instant,
        help="as of this ISO instant (default: the store's last update)",
    )  # fmt: skip
    report.add_argument(
        "--rate", type=float, default=1.0,
        help="what an hour of call-out costs, for recurring incidents (default 1: hours)",
    )  # fmt: skip
    _calendar_options(report)
    report.set_defaults(run=_report)

    sla = commands.add_parser("sla", help="SLA clocks", description="SLA clocks.")
    sla_commands = sla.add_subparsers(title="commands", metavar="COMMAND")
    explain = sla_commands.add_parser(
        "explain",
        help="one record's SLA clocks as timelines: start, pauses, warnings, breach",
        description="Print one incident's SLA clocks (response and resolution) as timelines: "
        "when each started, paused, resumed, crossed its warnings, breached and stopped.",
    )
    explain.add_argument("id", help="the incident's id, e.g. INC00042")
    _store_option(explain)
    explain.add_argument(
        "--at",
        type=_instant,
        help="read the clock at this ISO instant, e.g. 2025-04-01T18:00+02:00 (no zone: UTC; "
        "default: now)",
    )
    explain.add_argument(
        "--clock", choices=("both", "response", "resolution"), default="both",
        help="which clock (default: both, response first)",
    )  # fmt: skip
    _calendar_options(explain)
    explain.set_defaults(run=_explain)
    return parser


# --------------------------------------------------------------------------- options


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", required=True, metavar="URL",
        help="sqlite:///relative.db, sqlite:////absolute.db or postgresql://...",
    )  # fmt: skip


def _calendar_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hours", default="mon-fri=08:00-18:00", metavar="DAYS=HOURS[;...]",
        help="business hours, e.g. 'mon-fri=09:00-17:00;sat=10:00-14:00' or '24x7' "
        "(default: mon-fri=08:00-18:00, the demo desk's)",
    )  # fmt: skip
    parser.add_argument("--tz", default="Europe/Berlin", help="their time zone")
    parser.add_argument(
        "--targets", metavar="P1=4h,...",
        help="resolution targets per priority in business time, e.g. P1=4h,P2=8h,P3=3d "
        "(default: P1 4h, P2 8h, P3 24h, P4 40h, P5 80h; response: an eighth of each)",
    )  # fmt: skip


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a positive whole number, not {text!r}")
    return value


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"an ISO date and time such as 2025-03-31T18:00+02:00, not {text!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _targets(text: str | None) -> dict[Priority, timedelta]:
    if text is None:
        return TARGETS
    out: dict[Priority, timedelta] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = item.partition("=")
        match = _DURATION.fullmatch(value.strip())
        try:
            priority = Priority.parse(key.strip())
        except ValidationError:
            priority = None
        if priority is None or match is None:
            raise UserError(f"--targets: {item!r} is not like P1=4h (units m, h, d, w)")
        out[priority] = timedelta(**{_UNITS[match[2]]: float(match[1])})
    return out


def _calendar(hours: str, tz: str) -> BusinessCalendar:
    if hours.strip().lower() == "24x7":
        return BusinessCalendar.always(tz=tz)
    spec: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in hours.split(";"))):
        days, sep, times = item.partition("=")
        if not sep:
            raise UserError(f"--hours: {item!r} is not like mon-fri=09:00-17:00")
        spec[days.strip()] = times.strip()
    return BusinessCalendar.weekly(spec, tz=tz)


@contextmanager
def open_store(url: str) -> Iterator[Any]:
    """The store a URL names, closed afterwards."""
    if url.startswith("sqlite:///"):
        from itsmcore.storage import SQLiteStore  # noqa: PLC0415 - only the store asked for

        path = Path(url.removeprefix("sqlite:///"))
        if not path.parent.exists():
            raise UserError(f"--store: no folder {path.parent} for {path.name}")
        with SQLiteStore(path) as store:
            yield store
    elif url.startswith(("postgresql://", "postgres://")):
        from itsmcore.storage import PostgresStore  # noqa: PLC0415

        with PostgresStore(url) as store:
            yield store
    else:
        raise UserError(
            f"--store: {url!r} is not a store URL; use sqlite:///path.db or postgresql://..."
        )


# --------------------------------------------------------------------------- commands


def _demo(args: argparse.Namespace, out: TextIO) -> None:
    month = sample_month(seed=args.seed, incidents=args.incidents)
    with _folder(args.folder) as folder:
        path = folder / "desk.db"
        if path.exists():
            raise UserError(f"{path} exists already: give another --folder or remove it")
        with open_store(f"sqlite:///{path}") as store, store.unit_of_work() as uow:
            for incident in month.incidents:
                uow.incidents.add(incident)
            for problem in month.problems:
                uow.problems.add(problem)
            for change in month.changes:
                uow.changes.add(change)
            uow.commit()
        out.write(f"A month of a service desk, {month.start:%d %b} to {month.end:%d %b %Y}, ")
        out.write(f"stored in {path}\n")
        counts = Counter(str(i.state) for i in month.incidents)
        out.write(f"  {len(month.incidents)} incidents ({_counts(counts)}), ")
        out.write(f"{len(month.problems)} problems, {len(month.changes)} changes\n\n")
        _sla_table(month.incidents, month.end, out)
        _kpi_table(month, out)
        if args.folder is not None:
            first = month.incidents[0].id
            out.write(
                f"\nNext: itsmcore sla explain {first} --store sqlite:///{path} "
                f"--at {month.end.isoformat()}\n"
            )


@contextmanager
def _folder(folder: Path | None) -> Iterator[Path]:
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="itsmcore-demo-") as temporary:
            yield Path(temporary)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {state}" for state, n in counts.most_common())


def _clocks(
    targets: dict[Priority, timedelta], calendar: BusinessCalendar
) -> tuple[SLADefinition, SLADefinition]:
    """The desk's response and resolution clocks (response targets an eighth of resolution's)."""
    response = {p: t / 8 for p, t in targets.items()}
    return (
        SLADefinition.incident_response(response, calendar),
        SLADefinition.incident_resolution(targets, calendar),
    )


def _sla_table(incidents: Sequence[Any], at: datetime, out: TextIO) -> None:
    clocks = _clocks(TARGETS, OFFICE)
    by_name = {clock.name: clock for clock in clocks}
    rows = evaluate_many(incidents, clocks, at=at, fields=("priority",))
    out.write("SLA compliance by priority (business hours, Mon-Fri 08:00-18:00 Berlin)\n")
    out.write(f"  {'priority':<14}{'clock':<22}{'target':>8}{'met':>6}{'breached':>10}")
    out.write(f"{'running':>9}{'compliance':>12}\n")
    table: dict[tuple[Priority, str], Counter[str]] = {}
    for row in rows:
        cell = table.setdefault((row["priority"], row["sla"]), Counter())
        stage = row["stage"]
        if row["breached"]:
            cell["breached"] += 1
        elif stage == "completed":
            cell["met"] += 1
        elif stage in {"in_progress", "paused"}:
            cell["running"] += 1
    for (priority, clock), cell in sorted(table.items()):
        target = by_name[clock].targets[priority]
        done = cell["met"] + cell["breached"]
        share = f"{100 * cell['met'] / done:.1f} %" if done else "-"
        shown = "none" if target is None else _span(target)
        out.write(f"  {priority!s:<14}{clock:<22}{shown:>8}{cell['met']:>6}")
        out.write(f"{cell['breached']:>10}{cell['running']:>9}{share:>12}\n")


IMPORT_WORKFLOW = "itsmcore-import"
"""The workflow ``itsmcore import`` stores incidents on: the incident lifecycle with what
real exports show (closing without a resolution, updates to closed incidents), and any
resolution code, hold reason or channel the export names. Registered by every command
that reads a store, so imported incidents load back."""


def _import_workflow() -> Any:
    from itsmcore.incident import Incident  # noqa: PLC0415 - the commands that need it
    from itsmcore.io import import_workflow  # noqa: PLC0415

    base = import_workflow(resolution_codes=["solution provided"], name=IMPORT_WORKFLOW)
    workflow = attrs.evolve(base, choices={})  # any value the export names
    Incident.register_workflow(workflow, replace=True)
    return workflow


def _import(args: argparse.Namespace, out: TextIO) -> None:
    from itsmcore.io import read_incident_log  # noqa: PLC0415 - only this command reads logs

    if not args.file.exists():
        raise UserError(f"no such file: {args.file}")
    zone(args.zone)  # an unknown zone is a mistake before the file is read
    with open_store(args.store) as store:
        _progress(f"reading {args.file}")
        result = read_incident_log(args.file, zone=args.zone, workflow=_import_workflow())
        incidents = list(result.incidents.values())
        batch = 1000
        for start in range(0, len(incidents), batch):
            with store.unit_of_work() as uow:
                for incident in incidents[start : start + batch]:
                    uow.incidents.add(incident)
                uow.commit()
            _progress(f"storing incidents {_bar(start + batch, len(incidents))}")
        _progress("", done=True)
    out.write(result.report.summary() + "\n")
    out.write(f"stored {len(incidents):,} incidents in {args.store}\n")


def _bar(done: int, total: int, width: int = 30) -> str:
    done = min(done, total)
    filled = width * done // max(total, 1)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}"


def _progress(text: str, *, done: bool = False) -> None:
    """A progress line on stderr, redrawn in place on a terminal; quiet when piped."""
    if not sys.stderr.isatty():
        return
    sys.stderr.write("\r\x1b[K" + text + ("\n" if done and text else ""))
    if done:
        sys.stderr.write("\r\x1b[K")
    sys.stderr.flush()


def _report(args: argparse.Namespace, out: TextIO) -> None:
    from itsmcore.recurrence import Billing  # noqa: PLC0415 - only this command reports
    from itsmcore.report import html_report  # noqa: PLC0415

    calendar = _calendar(args.hours, args.tz)
    targets = _targets(args.targets)
    _, resolution = _clocks(targets, calendar)
    if args.rate < 0:
        raise UserError(f"--rate must not be negative, got {args.rate}")
    _import_workflow()
    with open_store(args.store) as store, store.unit_of_work() as uow:
        incidents = list(uow.incidents.iterate(batch=2000))
    if not incidents:
        raise UserError(f"no incidents in {args.store}")
    at = args.at or max(i.updated_at for i in incidents)
    page = html_report(
        incidents, at=at, calendar=calendar, clocks=[resolution], billing=Billing(rate=args.rate)
    )
    args.out.write_text(page, encoding="utf-8")
    out.write(f"wrote {args.out} ({len(page) // 1024:,} KB, {len(incidents):,} incidents)\n")


def _explain(args: argparse.Namespace, out: TextIO) -> None:
    calendar = _calendar(args.hours, args.tz)
    targets = _targets(args.targets)
    response, resolution = _clocks(targets, calendar)
    shown = {"both": [response, resolution], "response": [response], "resolution": [resolution]}
    clocks = shown[args.clock]
    at = args.at or datetime.now(UTC)
    tz = zone(args.tz)
    _import_workflow()
    with open_store(args.store) as store, store.unit_of_work() as uow:
        try:
            record = uow.incidents.get(args.id)
        except NotFoundError:
            raise UserError(f"no incident {args.id!r} in {args.store}") from None
    out.write(f"{record.id} {record.title!r}, priority {record.priority}, ")
    out.write(f"read at {at.astimezone(tz):%Y-%m-%d %H:%M %Z} ({args.hours} {args.tz})\n")
    for clock in clocks:
        _story(clock, record, at, tz, out)


def _story(clock: SLADefinition, record: Any, at: datetime, tz: Any, out: TextIO) -> None:
    """One clock of one record: its moments, then where it stands."""
    status = clock.evaluate(record, at=at)
    target = _span(status.target) if status.target is not None else "none"
    out.write(f"\n{clock.name} clock, target {target} of business time\n")
    story = clock.explain(record, at=at)
    if not story:
        out.write("  the clock has not started\n")
    for moment in story:
        local = moment.at.astimezone(tz)
        spent = _span(moment.business_elapsed)
        out.write(f"  {local:%a %d %b %Y %H:%M}  {moment.what:<26} {spent:>12}\n")
    state = status.stage.value.replace("_", " ") + (", breached" if status.breached else "")
    out.write(f"  now: {state}; {_span(status.business_elapsed)} used")
    running = status.stage.value == "in_progress" and status.remaining is not None
    if running and status.remaining is not None and status.remaining > timedelta(0):
        out.write(f", {_span(status.remaining)} left")
        if status.due_at is not None:
            out.write(f", due {status.due_at.astimezone(tz):%a %d %b %H:%M}")
    out.write("\n")


def _kpi_table(month: Any, out: TextIO) -> None:
    from itsmcore import analytics  # noqa: PLC0415 - only the demo prints KPIs here

    at, incidents, changes = month.end, month.incidents, month.changes
    out.write("\nKey figures (business hours, as of the month's end)\n")
    rows = [
        (
            f"mean time to acknowledge, {row.group}",
            _span(row.business_mean) if row.business_mean else "-",
            f"{row.count} incidents",
        )
        for row in analytics.mtta(incidents, at=at, by="priority", calendar=OFFICE)
    ]
    rows += [
        (
            f"mean time to resolve, {row.group}",
            _span(row.business_mean) if row.business_mean else "-",
            f"{row.count} resolved, {row.pending} open",
        )
        for row in analytics.mttr(incidents, at=at, by="priority", calendar=OFFICE)
    ]
    shares = [
        ("first-contact resolution", analytics.first_contact_resolution(incidents, at=at)),
        ("reopen rate", analytics.reopen_rate(incidents, at=at)),
        ("change success rate", analytics.change_success_rate(changes, at=at)),
        ("emergency changes", analytics.emergency_change_ratio(changes, at=at)),
    ]
    for name, (row,) in shares:
        rate = "-" if row.rate is None else f"{100 * row.rate:.1f} %"
        rows.append((name, rate, f"{row.hits} of {row.count}"))
    (moves,) = analytics.reassignment(incidents, at=at)
    rows.append(("reassignments per incident", f"{moves.mean:.2f}", f"{moves.count} incidents"))
    for name, value, basis in rows:
        out.write(f"  {name:<44}{value:>14}   {basis}\n")


def _span(span: timedelta) -> str:
    """``12 h 36 min``: business time as people read it."""
    sign, span = ("-", -span) if span < timedelta(0) else ("", span)
    minutes, seconds = divmod(round(span.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    parts.append(f"{seconds} s" if (seconds and not hours) or not (hours or minutes) else "")
    return sign + " ".join(p for p in parts if p)


if __name__ == "__main__":
    sys.exit(main())
