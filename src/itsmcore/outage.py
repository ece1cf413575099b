"""Common causes: many incidents on many CIs at once, explained by one upstream CI.

When an outage makes hundreds of users call, each call is logged on the CI the caller sees
(a desktop, an application). ``common_causes(incidents, model)`` finds the upstream CIs whose
failure would explain them, through the :class:`~itsmcore.service.ServiceModel`, and ranks
them by how many of the affected CIs, business services and callers each explains. A
:class:`CommonCause` becomes a parent incident with the calls as its children
(:meth:`CommonCause.to_parent`), or a problem with them linked (:meth:`CommonCause.to_problem`).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Final

import attrs

from itsmcore.errors import ValidationError
from itsmcore.incident import Incident, link_child
from itsmcore.problem import Problem, link_incidents

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime, timedelta

    from itsmcore.priority import Level
    from itsmcore.service import ServiceModel

__all__ = ["CommonCause", "common_causes"]

_EXACT: Final = 50  # candidates checked exactly (redundancy included), by rough reach first


@attrs.frozen
class CommonCause:
    """An upstream CI whose failure explains several incidents' CIs at once."""

    ci: str
    cis: tuple[str, ...]
    """The affected CIs (those with incidents) its failure takes down."""
    services: tuple[str, ...]
    """The business services its failure takes down."""
    callers: int
    """Distinct callers among the incidents it explains."""
    incidents: tuple[Incident, ...] = attrs.field(repr=False)

    def to_parent(
        self,
        *,
        id: str,  # noqa: A002 - the record's id, named as users name it
        at: datetime,
        by: str,
        impact: Level | str | int = 1,
        urgency: Level | str | int = 1,
        title: str | None = None,
    ) -> tuple[Incident, list[Incident]]:
        """A parent incident on the common cause, every explained incident its child.

        Incidents that already have a parent are left as they are. Returns the parent and
        the incidents after linking (save them all).
        """
        parent = Incident.open(
            id=id, title=title or f"Outage: {self.ci}", caller=by, impact=impact,
            urgency=urgency, at=at, by=by, ci=self.ci,
            description=f"{len(self.incidents)} incidents on {len(self.cis)} CIs, "
            f"{len(self.services)} services down: {', '.join(self.services) or 'none'}",
        )  # fmt: skip
        children = []
        for incident in self.incidents:
            if incident.parent is None and incident.is_active:
                parent, incident = link_child(parent, incident, at=at, by=by)  # noqa: PLW2901
            children.append(incident)
        return parent, children

    def to_problem(
        self,
        *,
        id: str,  # noqa: A002 - the record's id, named as users name it
        at: datetime,
        by: str,
        impact: Level | str | int = 1,
        urgency: Level | str | int = 2,
    ) -> tuple[Problem, list[Incident]]:
        """A problem on the common cause with every explained incident linked."""
        problem = Problem.open(
            id=id, title=f"Common cause of {len(self.incidents)} incidents: {self.ci}",
            impact=impact, urgency=urgency, at=at, by=by, ci=self.ci,
            description=f"affected CIs: {', '.join(self.cis)}",
        )  # fmt: skip
        return link_incidents(problem, self.incidents, at=at, by=by)


def common_causes(
    incidents: Iterable[Incident],
    model: ServiceModel,
    *,
    window: timedelta | None = None,
    min_cis: int = 2,
) -> list[CommonCause]:
    """The upstream CIs that explain the most incidents' CIs, best first.

    Args:
        incidents: incidents with a ``ci`` (those without one, or on a CI the model does
            not know, are left out).
        model: what depends on what.
        window: only incidents opened within this long before the latest one.
        min_cis: the fewest affected CIs a cause must explain.

    Each candidate is a CI upstream of an affected CI (or an affected CI itself); its
    failure is propagated through the model, redundancy included, and it explains the
    affected CIs that go down with it. Ranked by affected CIs, then services, then callers;
    of equals, the most specific (the one taking the fewest nodes down) first.
    """
    if isinstance(min_cis, bool) or not isinstance(min_cis, int) or min_cis < 1:
        raise ValidationError(f"min_cis must be a whole number from 1, got {min_cis!r}")
    chosen = [i for i in incidents if getattr(i, "ci", None) in model]
    if window is not None and chosen:
        latest = max(i.opened_at for i in chosen)
        chosen = [i for i in chosen if i.opened_at >= latest - window]
    by_ci: dict[str, list[Incident]] = {}
    for incident in chosen:
        by_ci.setdefault(incident.ci, []).append(incident)  # type: ignore[arg-type]
    reach: Counter[str] = Counter()
    for ci in by_ci:
        reach.update(model.upstream(ci))
    found = []
    for candidate, _rough in reach.most_common(_EXACT):
        report = model.impacted_services([candidate])
        explained = sorted(ci for ci in by_ci if ci in report.down)
        if len(explained) < min_cis:
            continue
        calls = [i for ci in explained for i in by_ci[ci]]
        cause = CommonCause(
            candidate, tuple(explained), tuple(s.service.id for s in report.services),
            len({i.caller for i in calls}), tuple(calls),
        )  # fmt: skip
        found.append((cause, len(report.down)))
    # Of causes explaining as much, the most specific (taking least down with it) first.
    found.sort(key=lambda p: (-len(p[0].cis), -len(p[0].services), -p[0].callers, p[1], p[0].ci))
    return [cause for cause, _ in found]
