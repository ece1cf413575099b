"""Priority: the ITIL matrix cell by cell, custom scales, and label parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from itsmcore import (
    DefinitionError,
    Impact,
    Level,
    Priority,
    PriorityMatrix,
    Urgency,
    ValidationError,
)

HIGH, MEDIUM, LOW = Impact.HIGH, Impact.MEDIUM, Impact.LOW

# ../shared/domain/incident.md, ServiceNow's default lookup.
DEFAULT = {
    (Impact.HIGH, Urgency.HIGH): Priority.P1,
    (Impact.HIGH, Urgency.MEDIUM): Priority.P2,
    (Impact.HIGH, Urgency.LOW): Priority.P3,
    (Impact.MEDIUM, Urgency.HIGH): Priority.P2,
    (Impact.MEDIUM, Urgency.MEDIUM): Priority.P3,
    (Impact.MEDIUM, Urgency.LOW): Priority.P4,
    (Impact.LOW, Urgency.HIGH): Priority.P3,
    (Impact.LOW, Urgency.MEDIUM): Priority.P4,
    (Impact.LOW, Urgency.LOW): Priority.P5,
}


@pytest.mark.parametrize(("cell", "expected"), DEFAULT.items(), ids=str)
def test_the_itil_default_matrix_cell_by_cell(
    cell: tuple[Impact, Urgency], expected: Priority
) -> None:
    assert PriorityMatrix.itil_default().priority(*cell) is expected


@given(st.sampled_from(list(Impact)), st.sampled_from(list(Impact)), st.sampled_from(list(Urgency)))
def test_priority_is_monotonic_in_impact_and_urgency(a: Impact, b: Impact, u: Urgency) -> None:
    matrix = PriorityMatrix.itil_default()
    higher, lower = min(a, b), max(a, b)  # lower number = more impact
    assert matrix.priority(higher, u) <= matrix.priority(lower, u)
    urgent, relaxed = Urgency(min(a, b).value), Urgency(max(a, b).value)
    assert matrix.priority(u.value, urgent) <= matrix.priority(u.value, relaxed)


def test_labels_and_ordering() -> None:
    assert [p.label for p in Priority] == ["Critical", "High", "Moderate", "Low", "Planning"]
    assert str(Priority.P3) == "3 - Moderate"
    assert str(Impact.MEDIUM) == "2 - Medium"
    assert Priority.P1 < Priority.P5  # lower number, more urgent
    assert min([Priority.P4, Priority.P1, Priority.P2]) is Priority.P1


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        (Impact, "1 - High", Impact.HIGH),
        (Impact, "2 - Medium", Impact.MEDIUM),
        (Urgency, "3 - Low", Urgency.LOW),
        (Urgency, "high", Urgency.HIGH),
        (Urgency, " HIGH ", Urgency.HIGH),
        (Impact, 2, Impact.MEDIUM),
        (Impact, "3", Impact.LOW),
        (Impact, Impact.LOW, Impact.LOW),
        (Priority, "1 - Critical", Priority.P1),
        (Priority, "3 - Moderate", Priority.P3),
        (Priority, "P4", Priority.P4),
        (Priority, "p2", Priority.P2),
        (Priority, "planning", Priority.P5),
        (Priority, 5, Priority.P5),
    ],
)
def test_common_labels_parse(kind: type[Level], text: object, expected: Level) -> None:
    assert kind.parse(text) is expected


ACCEPTED = {
    Impact: {"1", "2", "3", "high", "medium", "low", "1 - high", "2 - medium", "3 - low"},
    Priority: {
        "1", "2", "3", "4", "5", "p1", "p2", "p3", "p4", "p5", "critical", "high",
        "moderate", "low", "planning", "1 - critical", "2 - high", "3 - moderate", "4 - low",
        "5 - planning",
    },
}  # fmt: skip


@pytest.mark.parametrize("kind", [Impact, Priority])
@given(value=st.text(max_size=14) | st.integers(-3, 9) | st.booleans() | st.none() | st.floats())
def test_anything_else_is_a_validation_error(kind: type[Level], value: object) -> None:
    normal = " ".join(str(value).lower().split()).replace(" -", " -").strip()
    acceptable = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= len(kind)
    if isinstance(value, str):
        acceptable = " ".join(normal.replace("-", " - ").split()) in {
            " ".join(a.replace("-", " - ").split()) for a in ACCEPTED[kind]
        }
    if acceptable:
        assert isinstance(kind.parse(value), kind)
    else:
        with pytest.raises(ValidationError, match=f"unknown {kind.__name__}"):
            kind.parse(value)


def test_a_mismatched_label_is_refused() -> None:
    with pytest.raises(ValidationError, match="'1 - Low'"):
        Impact.parse("1 - Low")
    with pytest.raises(ValidationError):
        Impact.parse("P1")  # a priority label, not an impact
    assert issubclass(ValidationError, ValueError)


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


ROWS_4X4 = [[1, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 5]]


def test_a_four_by_four_matrix() -> None:
    matrix = PriorityMatrix.from_rows(Impact4, Urgency4, ROWS_4X4)
    assert matrix.priority(Impact4.EXTENSIVE, Urgency4.CRITICAL) is Priority.P1
    assert matrix.priority("minor", "4 - Low") is Priority.P5
    assert matrix.priority(2, "critical") is Priority.P1
    assert [impact for impact, _ in matrix.rows()] == list(Impact4)
    with pytest.raises(ValidationError, match="Urgency4"):
        matrix.priority("minor", "urgent")
    assert "| Minor | P3 Moderate | P4 Low | P5 Planning | P5 Planning |" in matrix.to_markdown()


def test_matrices_must_be_total_and_well_typed() -> None:
    cells = {(i, u): Priority.P3 for i in Impact for u in Urgency}
    del cells[Impact.LOW, Urgency.HIGH]
    with pytest.raises(DefinitionError, match=r"no priority for \(LOW, HIGH\)"):
        PriorityMatrix(Impact, Urgency, cells)
    wrong_enum = dict(DEFAULT) | {(Impact4.MINOR, Urgency.LOW): Priority.P5}
    with pytest.raises(DefinitionError, match="must be"):
        PriorityMatrix(Impact, Urgency, wrong_enum)
    not_a_priority = dict(DEFAULT) | {(Impact.LOW, Urgency.LOW): 5}
    with pytest.raises(DefinitionError, match="not a Priority"):
        PriorityMatrix(Impact, Urgency, not_a_priority)
    with pytest.raises(DefinitionError, match="need 4 rows of 4"):
        PriorityMatrix.from_rows(Impact4, Urgency4, ROWS_4X4[:3])
    with pytest.raises(DefinitionError, match="cell"):
        PriorityMatrix.from_rows(Impact4, Urgency4, [[1, 1, 2, 9], *ROWS_4X4[1:]])
    with pytest.raises(DefinitionError, match="Level enum"):
        PriorityMatrix(str, Urgency, DEFAULT)  # type: ignore[arg-type]
    assert PriorityMatrix.itil_default() == PriorityMatrix(Impact, Urgency, DEFAULT)
