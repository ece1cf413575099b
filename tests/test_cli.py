"""The ``itsmcore`` command line, run as a user runs it: output, exit codes, friendly errors."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from itsmcore import Change, Incident, Problem
from itsmcore.cli import main
from itsmcore.sample import OFFICE, sample_month
from itsmcore.storage import SQLiteStore


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_sample_month_is_reproducible_and_every_record_replays() -> None:
    month = sample_month(seed=3, incidents=120)
    assert month == sample_month(seed=3, incidents=120)
    assert month != sample_month(seed=4, incidents=120)
    for practice, records in ((Incident, month.incidents), (Problem, month.problems),
                              (Change, month.changes)):  # fmt: skip
        assert records
        for record in records:
            assert practice.replay(record.history) == record
            assert month.start <= record.opened_at < month.end
            assert record.updated_at < month.end
    states = Counter(str(i.state) for i in month.incidents)
    assert states["closed"] > states["resolved"] > 0
    assert any(i.reopen_count for i in month.incidents)
    assert any(i.reassignment_count > 1 for i in month.incidents)
    assert any(i.first_contact_resolution for i in month.incidents)
    assert sum(OFFICE.is_open(i.opened_at) for i in month.incidents) > 0.8 * len(month.incidents)
    linked = {t for p in month.problems for t in p.incidents}
    assert all(i.id in linked for i in month.incidents if i.problems)
    assert any(i.problems for i in month.incidents)


def test_demo_stores_the_month_and_prints_its_sla_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "demo", "--folder", str(tmp_path), "--incidents", "80")
    assert (code, err) == (0, "")
    assert "80 incidents" in out
    assert "SLA compliance by priority" in out
    assert "incident resolution" in out
    assert "incident response" in out
    assert "Key figures" in out
    assert "first-contact resolution" in out
    assert "change success rate" in out
    with SQLiteStore(tmp_path / "desk.db") as store, store.unit_of_work() as uow:
        month = sample_month(incidents=80)
        assert uow.incidents.get(month.incidents[5].id) == month.incidents[5]
        assert len(uow.changes.find()) == len(month.changes)
    # Again into the same folder: refused, the store kept.
    code, _, err = run(capsys, "demo", "--folder", str(tmp_path))
    assert code == 1
    assert "exists already" in err


def test_sla_explain_prints_the_clock_story(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(capsys, "demo", "--folder", str(tmp_path), "--incidents", "30")
    month = sample_month(incidents=30)
    held = next(i for i in month.incidents if any(e.type == "incident.held" for e in i.history))
    store = f"sqlite:///{tmp_path / 'desk.db'}"
    code, out, err = run(capsys, "sla", "explain", held.id, "--store", store,
                         "--at", month.end.isoformat())  # fmt: skip
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"{held.id} {held.title!r}")
    response, resolution = out.split("\n\n")[1:]
    assert response.startswith("incident response clock")
    assert resolution.startswith("incident resolution clock")
    story = [line.split("  ")[2].strip() for line in resolution.splitlines()[1:-1]]
    assert story[0] == "started"
    assert "paused" in story
    assert "resumed" in story
    assert resolution.splitlines()[-1].startswith("  now: ")
    code, out, _ = run(capsys, "sla", "explain", held.id, "--store", store, "--clock",
                       "response", "--hours", "24x7", "--tz", "UTC", "--targets", "P1=1h,"
                       "P2=2h,P3=4h,P4=8h,P5=1d", "--at", month.end.isoformat())  # fmt: skip
    assert code == 0
    assert "incident response clock" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sla", "explain", "INC404", "--store", "sqlite:///{db}"], "no incident 'INC404'"),
        (["sla", "explain", "INC00001", "--store", "mysql://x"], "is not a store URL"),
        (["sla", "explain", "INC00001", "--store", "sqlite:////nowhere/x.db"], "no folder"),
        (
            ["sla", "explain", "INC00001", "--store", "sqlite:///{db}", "--targets", "P9=1h"],
            "is not like P1=4h",
        ),
        (
            ["sla", "explain", "INC00001", "--store", "sqlite:///{db}", "--hours", "mon 9-5"],
            "is not like mon-fri=09:00-17:00",
        ),
        (
            ["sla", "explain", "INC00001", "--store", "sqlite:///{db}", "--tz", "Mars/Base"],
            "unknown time zone",
        ),
    ],
)
def test_user_mistakes_are_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    run(capsys, "demo", "--folder", str(tmp_path), "--incidents", "5")
    code, out, err = run(capsys, *(a.format(db=tmp_path / "desk.db") for a in argv))
    assert code == 1
    assert out == ""
    assert err.startswith("itsmcore: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_help_everywhere_and_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["demo", "--help"], ["sla", "explain", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
        assert "usage: itsmcore" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["sla", "explain", "INC1", "--store", "sqlite:///x.db", "--at", "yesterday"])
    assert exit_.value.code == 2
    assert "an ISO date and time" in capsys.readouterr().err
    assert main([]) == 2


def test_the_installed_command_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "itsmcore.cli", "--help"], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert "demo" in done.stdout


def test_the_commands_in_the_docs_run_as_shown(tmp_path: Path) -> None:
    """Each ``$ itsmcore ...`` line under a ``<!-- cli -->`` marker in docs/cli.md runs, in
    order, in one folder, and exits 0; a ``text`` block right after one is its output."""
    page = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    blocks = page.split("<!-- cli -->")[1:]
    assert blocks
    for block in blocks:
        command = block.split("$ ", 1)[1].split("\n", 1)[0]
        done = subprocess.run(
            [sys.executable, "-m", "itsmcore.cli", *command.split()[1:]], cwd=tmp_path,
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        rest = block.split("```", 2)[2]
        if rest.lstrip().startswith("```text"):
            shown = rest.lstrip().removeprefix("```text\n").split("```", 1)[0]
            assert done.stdout == shown


def test_import_then_explain_in_a_new_process(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from test_io import LIFE, _csv  # noqa: PLC0415 - the io tests' small export

    export = tmp_path / "export.csv"
    export.write_text(_csv(LIFE))
    store = f"sqlite:///{tmp_path / 'desk.db'}"
    code, out, err = run(capsys, "import", str(export), "--store", store, "--zone", "UTC")
    assert (code, err) == (0, "")
    assert "0 rows rejected" in out
    assert f"stored 1 incidents in {store}" in out
    # Another process knows nothing of this one: the import's workflow loads by its name.
    done = subprocess.run(
        [sys.executable, "-m", "itsmcore.cli", "sla", "explain", "INC1", "--store", store,
         "--hours", "24x7", "--tz", "UTC", "--at", "2016-03-01T00:00+00:00"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "resumed after reopening" in done.stdout
    code, _, err = run(capsys, "import", str(tmp_path / "nope.csv"), "--store", store,
                       "--zone", "UTC")  # fmt: skip
    assert (code, err) == (1, f"itsmcore: no such file: {tmp_path / 'nope.csv'}\n")
    code, _, err = run(capsys, "import", str(export), "--store", store, "--zone", "Europe")
    assert code == 1
    assert "unknown time zone" in err


def test_report_writes_the_page_from_a_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(capsys, "demo", "--folder", str(tmp_path), "--incidents", "60")
    store = f"sqlite:///{tmp_path / 'desk.db'}"
    out_file = tmp_path / "report.html"
    code, out, err = run(capsys, "report", "--store", store, "--out", str(out_file),
                         "--rate", "95")  # fmt: skip
    assert (code, err) == (0, "")
    assert out.startswith(f"wrote {out_file}")
    html = out_file.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") == 3
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    code, _, err = run(capsys, "report", "--store", empty, "--out", str(out_file))
    assert (code, err) == (1, f"itsmcore: no incidents in {empty}\n")
    code, _, err = run(capsys, "report", "--store", store, "--out", str(out_file), "--rate", "-1")
    assert code == 1
    assert "--rate must not be negative" in err
