"""Priority from impact and urgency: the ITIL matrix, custom matrices, label parsing.

Impact says how much of the business is affected, urgency how fast it must be fixed; the
priority matrix maps the pair to a priority, P1 (critical) to P5 (planning). Lower numbers are
more urgent everywhere, as in ServiceNow: ``Priority.P1 < Priority.P2``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import IntEnum
from typing import TYPE_CHECKING, Final, Self

import attrs

from itsmcore.errors import DefinitionError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Impact", "Level", "Priority", "PriorityMatrix", "Urgency"]

_SCALES: dict[str, type[Level]] = {}
_LABEL_RE: Final = re.compile(r"\s*(?:[pP]?(\d+))?\s*(?:-\s*)?([A-Za-z][A-Za-z ]*?)?\s*")


class Level(IntEnum):
    """Base of ordered levels (1 = highest) that parse the labels service desks export.

    Subclass it for custom scales, e.g. a four-level impact::

        class Impact4(Level):
            EXTENSIVE = 1
            SIGNIFICANT = 2
            MODERATE = 3
            MINOR = 4
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        known = _SCALES.get(cls.__name__)
        where = (cls.__module__, cls.__qualname__)
        if known is not None and (known.__module__, known.__qualname__) != where:
            if [(m.name, m.value) for m in known] != [(m.name, m.value) for m in cls]:
                raise DefinitionError(
                    f"a different scale is already named {cls.__name__!r} ({known.__module__});"
                    " stored levels name their scale, so give each scale its own name"
                )
            return  # the same scale defined again elsewhere: the first one reads stored levels
        _SCALES[cls.__name__] = cls  # new, or redefined in its module (a reload, a notebook)

    @classmethod
    def scale(cls, name: str) -> type[Level]:
        """The scale (a ``Level`` subclass) of that name, as stored levels name it."""
        found = _SCALES.get(name)
        if found is None:
            raise DefinitionError(
                f"no scale named {name!r} is defined here; import the module that defines it"
            )
        return found

    @property
    def label(self) -> str:
        """The level's name as people write it: ``"High"``, ``"Walk In"``."""
        return self.name.replace("_", " ").title()

    def __str__(self) -> str:
        return f"{self.value} - {self.label}"

    @classmethod
    def parse(cls, value: object) -> Self:
        """The level named by ``value``: a member, its number, or a label.

        Accepts ``1``, ``"1"``, ``"high"``, ``"HIGH"``, ``"1 - High"`` (ServiceNow's export
        format) and, for priorities, ``"P1"``. A label with both a number and a name must
        agree (``"1 - Low"`` is refused).
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            member = cls._value2member_map_.get(value)
            if member is not None:
                return member  # type: ignore[return-value]
        elif isinstance(value, str):
            found = cls._from_label(value)
            if found is not None:
                return found
        accepted = ", ".join(f"{m.value} / {m.label!r} / {str(m)!r}" for m in cls)
        raise ValidationError(f"unknown {cls.__name__} {value!r}; use one of: {accepted}")

    @classmethod
    def _from_label(cls, text: str) -> Self | None:
        match = _LABEL_RE.fullmatch(text)
        if match is None or not any(match.groups()):
            return None
        number, name = match.groups()
        if number is not None and text.strip()[:1] in "pP" and cls is not Priority:
            return None  # "P1" names a priority, not an impact or urgency level
        by_number = next((m for m in cls if str(m.value) == number), None)
        by_name = next(
            (m for m in cls if name is not None and m.label.lower() == name.lower()), None
        )
        if number is not None and name is not None:
            return by_number if by_number is by_name else None
        return by_number if number is not None else by_name


class Impact(Level):
    """How much of the business an incident affects."""

    HIGH = 1
    MEDIUM = 2
    LOW = 3


class Urgency(Level):
    """How quickly the business needs it fixed."""

    HIGH = 1
    MEDIUM = 2
    LOW = 3


class Priority(Level):
    """The resulting priority; lower is more urgent (``P1 < P5``)."""

    P1 = 1
    P2 = 2
    P3 = 3
    P4 = 4
    P5 = 5

    @property
    def label(self) -> str:
        """``"Critical"``, ``"High"``, ``"Moderate"``, ``"Low"`` or ``"Planning"``."""
        return _PRIORITY_LABELS[self.value]


_PRIORITY_LABELS: Final = {1: "Critical", 2: "High", 3: "Moderate", 4: "Low", 5: "Planning"}

_ITIL_DEFAULT: Final = (
    (Priority.P1, Priority.P2, Priority.P3),
    (Priority.P2, Priority.P3, Priority.P4),
    (Priority.P3, Priority.P4, Priority.P5),
)


@attrs.frozen
class PriorityMatrix:
    """A total map from (impact, urgency) to priority.

    >>> matrix = PriorityMatrix.itil_default()
    >>> matrix.priority(Impact.HIGH, Urgency.MEDIUM)
    <Priority.P2: 2>
    >>> str(matrix.priority("2 - Medium", "3 - Low"))
    '4 - Low'
    """

    impacts: type[Level]
    urgencies: type[Level]
    table: Mapping[tuple[Level, Level], Priority] = attrs.field(hash=False)

    def __attrs_post_init__(self) -> None:
        for name, kind in (("impacts", self.impacts), ("urgencies", self.urgencies)):
            if not (isinstance(kind, type) and issubclass(kind, Level)):
                raise DefinitionError(f"{name} must be a Level enum class, got {kind!r}")
        cells = dict(self.table)
        for key, value in cells.items():
            if (
                not isinstance(key, tuple)
                or len(key) != 2
                or not isinstance(key[0], self.impacts)
                or not isinstance(key[1], self.urgencies)
            ):
                raise DefinitionError(
                    f"cell {key!r} must be ({self.impacts.__name__}, {self.urgencies.__name__})"
                )
            if not isinstance(value, Priority):
                raise DefinitionError(f"cell {key!r} maps to {value!r}, which is not a Priority")
        missing = [
            f"({i.name}, {u.name})"
            for i in self.impacts
            for u in self.urgencies
            if (i, u) not in cells
        ]
        if missing:
            raise DefinitionError(f"the matrix has no priority for {', '.join(missing)}")
        object.__setattr__(self, "table", cells)

    @classmethod
    def itil_default(cls) -> PriorityMatrix:
        """ITIL's (and ServiceNow's default) 3-by-3 matrix.

        High impact and high urgency give P1; low and low give P5.
        """
        return cls.from_rows(Impact, Urgency, _ITIL_DEFAULT)

    @classmethod
    def from_rows(
        cls,
        impacts: type[Level],
        urgencies: type[Level],
        rows: tuple[tuple[Priority | int, ...], ...] | list[list[Priority | int]],
    ) -> PriorityMatrix:
        """Build a matrix from rows (one per impact, highest first) of priorities per urgency.

        >>> class Impact4(Level):
        ...     EXTENSIVE = 1
        ...     SIGNIFICANT = 2
        ...     MODERATE = 3
        ...     MINOR = 4
        >>> class Urgency4(Level):
        ...     CRITICAL = 1
        ...     HIGH = 2
        ...     MEDIUM = 3
        ...     LOW = 4
        >>> m = PriorityMatrix.from_rows(Impact4, Urgency4, [
        ...     [1, 1, 2, 3],
        ...     [1, 2, 3, 4],
        ...     [2, 3, 4, 5],
        ...     [3, 4, 5, 5],
        ... ])
        >>> m.priority("minor", "critical").label
        'Moderate'
        """
        impact_levels, urgency_levels = list(impacts), list(urgencies)
        if len(rows) != len(impact_levels) or any(len(r) != len(urgency_levels) for r in rows):
            raise DefinitionError(
                f"need {len(impact_levels)} rows of {len(urgency_levels)} priorities "
                f"({impacts.__name__} by {urgencies.__name__})"
            )
        table = {}
        for impact, row in zip(impact_levels, rows, strict=True):
            for urgency, cell in zip(urgency_levels, row, strict=True):
                try:
                    table[impact, urgency] = Priority.parse(cell)
                except ValidationError as exc:
                    raise DefinitionError(f"cell ({impact.name}, {urgency.name}): {exc}") from exc
        return cls(impacts, urgencies, table)

    def priority(self, impact: Level | str | int, urgency: Level | str | int) -> Priority:
        """The priority of an impact and urgency (members, numbers or labels)."""
        return self.table[self.impacts.parse(impact), self.urgencies.parse(urgency)]

    def rows(self) -> Iterator[tuple[Level, tuple[Priority, ...]]]:
        """``(impact, priorities per urgency)`` per impact, highest impact first."""
        for impact in self.impacts:
            yield impact, tuple(self.table[impact, u] for u in self.urgencies)

    def to_markdown(self) -> str:
        """The matrix as a Markdown table, for docs and reports."""
        head = "| impact \\ urgency | " + " | ".join(u.label for u in self.urgencies) + " |"
        rule = "|---" * (len(self.urgencies) + 1) + "|"
        body = [
            f"| {impact.label} | " + " | ".join(f"{p.name} {p.label}" for p in cells) + " |"
            for impact, cells in self.rows()
        ]
        return "\n".join([head, rule, *body]) + "\n"
