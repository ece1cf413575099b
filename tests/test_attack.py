"""The attack harness (tests/attack.py) at a small budget, on every run.

`python tests/attack.py --budget large` runs the same attacks large and prints the figures
docs/reliability.md reports.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import attack

SMALL = attack.BUDGETS["small"]


def test_fuzzing_the_public_api_finds_only_typed_errors() -> None:
    figures = attack.fuzz(SMALL["fuzz"])
    assert figures["inputs tried"] >= SMALL["fuzz"] // 2
    assert figures["raw exceptions"] == 0, figures["examples"]


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "attack.db")
    return str(request.getfixturevalue("postgres_database"))


def test_racing_threads_and_processes_lose_nothing(target: str) -> None:
    figures = attack.race(target, SMALL["threads"], SMALL["processes"], SMALL["updates"])
    assert figures["units lost"] == 0
    assert figures["events duplicated"] == 0
    assert figures["units in the histories"] == figures["units committed"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_writers_killed_at_random_moments_leave_whole_records(target: str) -> None:
    figures = attack.kill(target, SMALL["kills"])
    assert figures["crashes survived"] == SMALL["kills"]
