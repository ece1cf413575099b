"""A desk's own impact and urgency scales, end to end: open, reprioritise, store, reload."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from itsmcore import DefinitionError, Incident, Level, Priority, PriorityMatrix, ValidationError
from test_storage import InMemory, SQLite


class Impact4(Level):
    EXTENSIVE = 1
    SIGNIFICANT = 2
    MODERATE = 3
    MINOR = 4


class Urgency4(Level):
    CRITICAL = 1
    HIGH = 2
    MEDIUM = 3
    LOW = 4


DESK = PriorityMatrix.from_rows(
    Impact4, Urgency4, [[1, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 5]]
)
T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)


def incident(**fields: Any) -> Incident:
    spec = {"id": "INC1", "title": "Mail down", "caller": "mia", "impact": "minor",
            "urgency": "critical", "matrix": DESK, "at": T0, "by": "desk"} | fields  # fmt: skip
    return Incident.open(**spec)


def test_the_record_keeps_the_desks_levels_and_takes_its_priority_from_the_desks_matrix() -> None:
    i = incident()
    assert (i.impact, i.urgency, i.priority) == (Impact4.MINOR, Urgency4.CRITICAL, Priority.P3)
    assert type(i.impact) is Impact4
    assert str(i.impact) == "4 - Minor"
    i = i.reprioritize(impact="significant", matrix=DESK, reason="more users", at=T0, by="s")
    assert (i.impact, i.priority) == (Impact4.SIGNIFICANT, Priority.P1)
    assert Incident.replay(i.history) == i
    assert type(Incident.replay(i.history).impact) is Impact4


def test_a_level_of_another_scale_is_refused_not_coerced() -> None:
    with pytest.raises(ValidationError, match="on the scale Impact4, and this matrix takes Impact"):
        incident().reprioritize(urgency="low", reason="calmer", at=T0, by="s")  # default matrix
    with pytest.raises(ValidationError, match="unknown Impact4 'high'"):
        incident(impact="high")


def test_a_second_scale_under_the_same_name_is_refused() -> None:
    with pytest.raises(DefinitionError, match="already named 'Impact4'"):

        class Impact4(Level):  # type: ignore[no-redef]
            HUGE = 1
            TINY = 2


@pytest.mark.parametrize("factory", [InMemory, SQLite])
def test_custom_levels_survive_the_stores(factory: Any, tmp_path: Path) -> None:
    _round_trip(factory().make_store(tmp_path))


def test_custom_levels_survive_postgres(postgres_database: str) -> None:
    from itsmcore.storage import PostgresStore  # noqa: PLC0415

    _round_trip(PostgresStore(postgres_database))


def _round_trip(store: Any) -> None:
    record = incident().reprioritize(urgency="high", matrix=DESK, reason="r", at=T0, by="s")
    plain = incident(id="INC2", impact=2, urgency=2, matrix=PriorityMatrix.itil_default())
    with store.unit_of_work() as uow:
        uow.incidents.add(record)
        uow.incidents.add(plain)
        uow.commit()
    with store.unit_of_work() as uow:
        loaded = uow.incidents.get("INC1")
        assert loaded == record
        assert (type(loaded.impact), type(loaded.urgency)) == (Impact4, Urgency4)
        assert [i.id for i in uow.incidents.find(priority=record.priority)] == ["INC1"]
        assert type(uow.incidents.get("INC2").impact).__name__ == "Impact"
