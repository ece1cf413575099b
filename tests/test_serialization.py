"""Records, events and SLA statuses as JSON and back: equal, custom states and scales too."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tasks import Task

from itsmcore import BusinessCalendar, Incident, Priority, SLADefinition, ValidationError
from itsmcore.incident import INCIDENT_WORKFLOW
from itsmcore.serialization import event_from_dict, record_from_dict, status_from_dict, to_dict
from itsmcore.testing import histories
from itsmcore.workflow import ACTIVE, PAUSED, Transition
from test_custom_scales import DESK

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
OFFICE = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin")
SLAS = [
    SLADefinition.incident_resolution({p: timedelta(hours=8) for p in Priority}, OFFICE),
    SLADefinition.response({p: timedelta(minutes=30) for p in Priority}),
]
APPROVALS = Incident.register_workflow(
    INCIDENT_WORKFLOW.derive(
        name="incident+approval-json",
        add_states={"awaiting_approval": [ACTIVE, PAUSED]},
        add_transitions=[
            Transition("request_approval", "in_progress", "awaiting_approval"),
            Transition("approve", "awaiting_approval", "in_progress"),
        ],
    )
)


def through_json(data: object) -> object:
    return json.loads(json.dumps(data))


@given(histories(Incident) | histories(Task) | histories(Incident, workflow=APPROVALS))
def test_any_record_round_trips_through_json(record: Incident | Task) -> None:
    data = through_json(to_dict(record))
    assert record_from_dict(data) == record  # type: ignore[arg-type]
    assert [event_from_dict(e) for e in data["history"]] == list(record.history)  # type: ignore[index]


@given(histories(Incident, workflow=APPROVALS), st.integers(0, 60 * 24 * 30))
def test_sla_statuses_round_trip_through_json(record: Incident, minutes: int) -> None:
    at = record.updated_at + timedelta(minutes=minutes)
    for sla in SLAS:
        status = sla.evaluate(record, at=at)
        assert status_from_dict(through_json(to_dict(status))) == status  # type: ignore[arg-type]


def test_custom_scales_and_states_survive_json() -> None:
    record = Incident.open(
        id="INC7", title="Mail", caller="mia", impact="minor", urgency="critical", matrix=DESK,
        at=T0, by="desk", workflow=APPROVALS,
    ).start(at=T0, by="sam").fire("request_approval", at=T0, by="sam")  # fmt: skip
    data = through_json(to_dict(record))
    assert data["history"][0]["impact"] == "Impact4:4"  # type: ignore[index]
    back = record_from_dict(data)  # type: ignore[arg-type]
    assert back == record
    assert (type(back.impact).__name__, back.state, back.workflow) == (
        "Impact4", "awaiting_approval", APPROVALS,
    )  # fmt: skip


def test_bad_dicts_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="history as a list"):
        record_from_dict({"kind": "incident"})
    with pytest.raises(ValidationError, match="no record kind 'ticketz'"):
        record_from_dict({"kind": "ticketz", "history": []})
    with pytest.raises(ValidationError, match="names its type"):
        event_from_dict({"at": "2025-03-03T09:00:00+00:00"})
    with pytest.raises(ValidationError, match="not an SLA status"):
        status_from_dict({"sla": "x"})
    with pytest.raises(ValidationError, match="to_dict takes"):
        to_dict("INC1")  # type: ignore[arg-type]


def test_to_dict_round_trips_without_json_for_records_with_enum_values() -> None:
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    from itsmcore import Change  # noqa: PLC0415
    from itsmcore.serialization import record_from_dict, to_dict  # noqa: PLC0415

    t = datetime(2025, 12, 10, 9, tzinfo=UTC)
    change = Change.open(id="CHG1", title="Patch", requester="rita", at=t, by="rita",
                         change_type="emergency", planned_start=t + timedelta(hours=1),
                         planned_end=t + timedelta(hours=2))  # fmt: skip
    assert record_from_dict(to_dict(change)) == change
