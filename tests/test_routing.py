"""Routing rules and tiered support: the documented behaviour, oracles and typed errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tasks import Task

from itsmcore import (
    BusinessCalendar,
    Change,
    Channel,
    DefinitionError,
    Incident,
    InvalidTransitionError,
    Priority,
    Problem,
    SLADefinition,
    ValidationError,
)
from itsmcore.routing import Caller, Escalator, Group, Match, Rule, RuleSet

M = timedelta(minutes=1)
H = timedelta(hours=1)
MON = datetime(2025, 3, 3, 9, tzinfo=UTC)  # a Monday
OFFICE = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="UTC")

GROUPS = (
    Group("service-desk", {"ana", "ben"}),
    Group("network", {"nia"}, hours=OFFICE, on_call="network-oncall"),
    Group("network-oncall", {"ola"}),
    Group("vip-desk", {"vic"}),
    Group("apps", {"abe"}),
    Group("l2", {"lea"}),
    Group("l2-b", {"lou"}),
    Group("l3", {"tom"}),
)
CALLERS = {"mia": Caller(location="Berlin"), "boss": Caller(location="Paris", vip=True)}


def incident(**fields: Any) -> Incident:
    spec: dict[str, Any] = {
        "id": "INC1",
        "title": "Cannot reach the file share",
        "caller": "mia",
        "impact": 2,
        "urgency": 2,
        "at": MON,
        "by": "desk",
    }
    return Incident.open(**(spec | fields))


def rules(**options: Any) -> RuleSet:
    spec: dict[str, Any] = {
        "rules": [
            Rule("vip", group="vip-desk", when={"caller.vip": True}),
            Rule("network", group="network", when={"category": "network"}),
            Rule("phoned apps", group="apps", when={"category": "software", "channel": "phone"}),
        ],
        "default": "service-desk",
        "groups": GROUPS,
        "kind": Incident,
    }
    return RuleSet(**(spec | options))


# --------------------------------------------------------------------------- routing


def test_first_match_routes_by_order_and_says_why() -> None:
    ruleset = rules()
    routing = ruleset.route(incident(category="network", caller="boss"), at=MON, callers=CALLERS)
    assert (routing.group, routing.rule.name) == ("vip-desk", "vip")
    assert routing.why == "rule 'vip' matched (caller.vip is True; caller boss); routed to vip-desk"
    routing = ruleset.route(incident(category="network"), at=MON, callers=CALLERS)
    assert (routing.group, routing.rule.name, routing.score) == ("network", "network", 1)
    assert routing.why == "rule 'network' matched (category is network); routed to network"


def test_every_condition_of_a_rule_must_hold() -> None:
    ruleset = rules()
    by_phone = incident(category="software", channel="phone")
    by_mail = incident(category="software", channel="email")
    assert ruleset.route(by_phone, at=MON, callers=CALLERS).group == "apps"
    assert ruleset.route(by_mail, at=MON, callers=CALLERS).group == "service-desk"


def test_the_default_takes_what_no_rule_matches_and_names_an_unknown_caller() -> None:
    routing = rules().route(incident(caller="stranger"), at=MON, callers=CALLERS)
    assert (routing.group, routing.rule.name, routing.score) == ("service-desk", "default", 0)
    assert routing.why == (
        "no rule matched, so the default group takes it (caller stranger is not in the "
        "directory); routed to service-desk"
    )


def test_out_of_hours_work_goes_to_the_on_call_group() -> None:
    saturday = MON + timedelta(days=5, hours=5)  # Sat 14:00
    routing = rules().route(incident(category="network"), at=saturday, callers=CALLERS)
    assert (routing.group, routing.rule_group) == ("network-oncall", "network")
    assert routing.why.endswith(
        "network is out of hours (opens Mon 2025-03-10 09:00 UTC), so its on-call group "
        "network-oncall takes it"
    )
    # At the opening instant the group itself is on duty again.
    monday = datetime(2025, 3, 10, 9, tzinfo=UTC)
    assert rules().route(incident(category="network"), at=monday, callers=CALLERS).group == (
        "network"
    )


def test_an_on_call_group_with_hours_of_its_own_hands_on_in_turn() -> None:
    evenings = BusinessCalendar.weekly({"mon-fri": "17:00-22:00"}, tz="UTC")
    groups = (
        Group("desk", {"a"}, hours=OFFICE, on_call="evening"),
        Group("evening", {"b"}, hours=evenings, on_call="night"),
        Group("night", {"c"}),
    )
    ruleset = RuleSet(rules=(), default="desk", groups=groups, kind=Incident)
    assert ruleset.route(incident(), at=MON, callers=None).group == "desk"
    assert ruleset.route(incident(), at=MON + 9 * H, callers=None).group == "evening"
    routing = ruleset.route(incident(), at=MON + 14 * H, callers=None)
    assert routing.group == "night"
    assert routing.why.count("out of hours") == 2


def test_best_score_takes_the_most_specific_rule_and_breaks_ties_by_order() -> None:
    ruleset = RuleSet(
        rules=[
            Rule("network", group="network", when={"category": "network"}),
            Rule("berlin network", group="apps", when={"category": "network",
                                                       "caller.location": "Berlin"}),
            Rule("vip", group="vip-desk", when={"caller.vip": True}),
            Rule("also network", group="l2", when={"category": "network"}),
        ],
        default="service-desk", groups=GROUPS, kind=Incident, mode="best",
    )  # fmt: skip
    routing = ruleset.route(incident(category="network"), at=MON, callers=CALLERS)
    assert (routing.rule.name, routing.score) == ("berlin network", 2)
    assert "with score 2, the best of 3 matching rules" in routing.why
    # Boss is in Paris: two rules score 1 and a VIP rule scores 1; the first of them wins.
    routing = ruleset.route(incident(category="network", caller="boss"), at=MON, callers=CALLERS)
    assert routing.rule.name == "network"
    weighted = RuleSet(
        rules=ruleset.rules, default="service-desk", groups=GROUPS, kind=Incident,
        mode=Match.BEST, weights={"caller.vip": 5},
    )  # fmt: skip
    routing = weighted.route(incident(category="network", caller="boss"), at=MON, callers=CALLERS)
    assert (routing.rule.name, routing.score) == ("vip", 5)


def test_values_are_read_as_the_field_types_hold_them() -> None:
    ruleset = RuleSet(
        rules=[
            Rule("urgent", group="l3", when={"priority": ["P1", 2]}),
            Rule("walk-ins", group="apps", when={"channel": "Walk In"}),
            Rule("no category", group="l2", when={"category": None}),
        ],
        default="service-desk", groups=GROUPS, kind=Incident,
    )  # fmt: skip
    assert ruleset.rules[0].when[0].values == (Priority.P1, Priority.P2)
    assert ruleset.rules[1].when[0].values == (Channel.WALK_IN,)
    assert ruleset.route(incident(impact=1, urgency=2), at=MON).group == "l3"
    assert ruleset.route(incident(channel="walk_in", category="x"), at=MON).group == "apps"
    assert ruleset.route(incident(), at=MON).group == "l2"
    assert ruleset.route(incident(category="x"), at=MON).group == "service-desk"
    assert "priority is one of P1, P2" in ruleset.route(incident(impact=1, urgency=1), at=MON).why


def test_applying_a_routing_assigns_through_the_records_assign_verb() -> None:
    ruleset = rules()
    inc = incident(category="network")
    routed, routing = ruleset.assign(inc, at=MON + M, by="router", callers=CALLERS)
    assert routed.assignment_group == "network"
    assert [e.type for e in routed.history] == ["incident.opened", "incident.assigned"]
    assert routed.history[-1].by == "router"
    assert routing.apply(routed, at=MON + 2 * M, by="router") is routed  # already there
    with pytest.raises(ValidationError, match="made for INC1"):
        routing.apply(incident(id="INC2"), at=MON + M, by="router")
    closed = (
        inc.resolve(code="solution_provided", notes="fixed", at=MON, by="ana")
        .close(at=MON, by="ana")
    )  # fmt: skip
    with pytest.raises(InvalidTransitionError):
        routing.apply(closed, at=MON + M, by="router")


def test_any_assignable_practice_routes_on_its_own_fields() -> None:
    problems = RuleSet(
        rules=[Rule("mail", group="apps", when={"service": "mail", "priority": "P3"})],
        default="service-desk", groups=GROUPS, kind=Problem, caller_field=None,
    )  # fmt: skip
    problem = Problem.open(id="PRB1", title="Mail drops", impact=2, urgency=2, service="mail",
                           at=MON, by="pm")  # fmt: skip
    routed, routing = problems.assign(problem, at=MON, by="router")
    assert routing.rule.name == "mail"
    assert [e.type for e in routed.history] == ["problem.opened", "problem.assigned"]
    tasks = RuleSet(
        rules=[Rule("web", group="apps", when={"project": "web"})],
        default="service-desk", groups=GROUPS, kind=Task, caller_field=None,
    )  # fmt: skip
    task = Task.open(id="T1", title="Renew", project="web", impact=2, urgency=2, at=MON, by="o")
    assert tasks.route(task, at=MON).group == "apps"
    # A field holding several values matches when any of them is among the rule's.
    changes = RuleSet(
        rules=[Rule("shop", group="apps", when={"services": ["shop", "payments"]})],
        default="service-desk", groups=GROUPS, kind=Change, caller_field="requester",
    )  # fmt: skip
    change = Change.open(id="CHG1", title="Patch", requester="kim", at=MON, by="kim",
                         services=("intranet", "shop"))  # fmt: skip
    assert changes.route(change, at=MON).group == "apps"


# --------------------------------------------------------------------------- rule properties

CATEGORIES = ("network", "software", "hardware")
LOCATIONS = ("Berlin", "Paris")
SERVICES = ("mail", "shop")
CHANNELS = (Channel.PHONE, Channel.EMAIL, Channel.PORTAL)
TARGETS = ("service-desk", "network", "vip-desk", "apps", "l2", "l3")
FIELD_VALUES: dict[str, tuple[Any, ...]] = {
    "category": (*CATEGORIES, None),
    "service": (*SERVICES, None),
    "channel": CHANNELS,
    "priority": tuple(Priority),
    "caller.location": (*LOCATIONS, None),
    "caller.vip": (True, False),
}


@st.composite
def rule_lists(draw: st.DrawFn) -> list[Rule]:
    out = []
    for n in range(draw(st.integers(0, 6))):
        fields = draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), min_size=1, max_size=3,
                               unique=True))  # fmt: skip
        when = {
            f: draw(st.lists(st.sampled_from(FIELD_VALUES[f]), min_size=1, max_size=2, unique=True))
            for f in fields
        }
        out.append(Rule(f"r{n}", group=draw(st.sampled_from(TARGETS)), when=when))
    return out


incidents = st.builds(
    incident,
    category=st.sampled_from((*CATEGORIES, None)),
    service=st.sampled_from((*SERVICES, None)),
    channel=st.sampled_from(CHANNELS),
    impact=st.integers(1, 3),
    urgency=st.integers(1, 3),
    caller=st.sampled_from(("c0", "c1", "c2", "c3")),
)
directories = st.dictionaries(
    st.sampled_from(("c0", "c1", "c2")),
    st.builds(Caller, location=st.sampled_from((*LOCATIONS, None)), vip=st.booleans()),
)


def holds(rule: Rule, record: Incident, callers: dict[str, Caller]) -> bool:
    """The brute-force reading of a rule: every condition's field equals one of its values."""
    caller = callers.get(record.caller, Caller())
    for condition in rule.when:
        if condition.field.startswith("caller."):
            value = getattr(caller, condition.field.removeprefix("caller."))
        else:
            value = getattr(record, condition.field)
        if not any(value == wanted for wanted in condition.values):
            return False
    return True


ALWAYS_OPEN = tuple(Group(name, {"someone"}) for name in TARGETS)


@given(rule_lists(), incidents, directories)
def test_first_match_is_the_first_rule_a_scan_finds(
    rule_list: list[Rule], record: Incident, callers: dict[str, Caller]
) -> None:
    ruleset = RuleSet(rules=rule_list, default="service-desk", groups=ALWAYS_OPEN, kind=Incident)
    routing = ruleset.route(record, at=MON, callers=callers)
    scan = [rule for rule in rule_list if holds(rule, record, callers)]
    if scan:
        assert routing.rule.name == scan[0].name
        assert routing.group == scan[0].group
    else:  # the default catches everything else
        assert (routing.rule.name, routing.group) == ("default", "service-desk")


@given(
    rule_lists(),
    incidents,
    directories,
    st.dictionaries(st.sampled_from(sorted(FIELD_VALUES)), st.integers(1, 4)),
)
def test_best_score_is_the_brute_force_maximum(
    rule_list: list[Rule], record: Incident, callers: dict[str, Caller], weights: dict[str, int]
) -> None:
    ruleset = RuleSet(
        rules=rule_list, default="service-desk", groups=ALWAYS_OPEN, kind=Incident,
        mode="best", weights=weights,
    )  # fmt: skip
    routing = ruleset.route(record, at=MON, callers=callers)
    scored = [
        (sum(weights.get(c.field, 1) for c in rule.when), -n, rule)
        for n, rule in enumerate(rule_list)
        if holds(rule, record, callers)
    ]
    if scored:
        score, _, best = max(scored, key=lambda s: (s[0], s[1]))
        assert (routing.rule.name, routing.group, routing.score) == (best.name, best.group, score)
    else:
        assert (routing.rule.name, routing.group, routing.score) == ("default", "service-desk", 0)


# --------------------------------------------------------------------------- routing errors


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"default": None}, "needs a default group"),
        ({"default": "nobody"}, "group 'nobody' is not declared"),
        ({"rules": [Rule("x", group="ghosts", when={"category": "a"})]}, "'ghosts' is not decl"),
        ({"rules": [Rule("x", group="l2", when={"colour": "red"})]}, "no field 'colour'"),
        ({"rules": [Rule("x", group="l2", when={"opened_at": "x"})]}, "cannot route on opened_at"),
        ({"rules": [Rule("x", group="l2", when={"history": "x"})]}, "cannot route on history"),
        ({"rules": [Rule("x", group="l2", when={"category": 3})]}, "3 is not a value of category"),
        ({"rules": [Rule("x", group="l2", when={"caller.vip": "yes"})]}, "'yes' is not a value"),
        ({"rules": [Rule("x", group="l2", when={"priority": "P9"})]}, "'P9' is not a value"),
        ({"rules": [Rule("x", group="l2", when={"tier": True})]}, "True is not a value of tier"),
        ({"rules": [Rule("x", group="l2", when={"channel": 5})]}, "5 is not a value of channel"),
        ({"rules": [Rule("x", group="l2", when={"category": ""})]}, "'' is not a value"),
        ({"rules": [Rule("x", group="l2", when={})]}, "no condition and would catch everything"),
        ({"rules": [Rule("x", group="l2", when={"category": "a"})] * 2}, "used twice"),
        ({"rules": [Rule("default", group="l2", when={"category": "a"})]}, "names the default"),
        ({"weights": {"category": 2}}, "weights score rules for mode='best'"),
        ({"mode": "best", "weights": {"category": 0}}, "positive integer"),
        ({"mode": "best", "weights": {"colour": 1}}, "no field 'colour'"),
        ({"mode": "most"}, "mode must be 'first' or 'best'"),
        ({"kind": Problem}, "Problem has no field 'caller'"),
        ({"kind": Problem, "caller_field": None}, "no field 'caller.vip'"),
        ({"kind": str}, "Assignable"),
        ({"groups": []}, "at least one"),
        ({"groups": [*GROUPS, Group("l2", {"x"})]}, "declared twice"),
        ({"groups": ["l2"]}, "Group objects"),
        ({"rules": Rule("x", group="l2", when={"category": "a"})}, "sequence of Rule"),
    ],
)
def test_a_rule_set_that_cannot_work_is_refused_when_defined(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        rules(**options)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Group("x", set()), "has no members"),
        (lambda: Group("x", "ana"), "collection of names"),
        (lambda: Group("", {"a"}), "non-empty name"),
        (lambda: Group("x", {"a"}, hours=OFFICE), "together"),
        (lambda: Group("x", {"a"}, on_call="y"), "together"),
        (lambda: Group("x", {"a"}, hours=OFFICE, on_call="x"), "its own on-call"),
        (lambda: Group("x", {"a"}, hours="9-17", on_call="y"), "BusinessCalendar"),
        (lambda: Rule("x", group=" ", when={"category": "a"}), "non-empty name"),
        (lambda: Rule("x", group="l2", when=[("category", "a")]), "map fields to values"),
        (lambda: Rule("x", group="l2", when={"category": []}), "non-empty collection"),
        (lambda: Rule("x", group="l2", when={"category": [["a"]]}), "plain values"),
        (lambda: Rule("x", group="l2", when={"opened_at": MON}), "a value or a non-empty"),
        (
            lambda: rules(
                groups=[
                    Group("a", {"x"}, hours=OFFICE, on_call="b"),
                    Group("b", {"y"}, hours=OFFICE, on_call="a"),
                ],
                default="a",
            ),
            "go round in a circle: a -> b -> a",
        ),
        (
            lambda: rules(groups=[Group("a", {"x"}, hours=OFFICE, on_call="b")], default="a"),
            "'b' is not a declared group",
        ),
    ],
)
def test_bad_groups_and_rules_are_definition_errors(build: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()


def test_bad_route_calls_are_validation_errors() -> None:
    ruleset = rules()
    with pytest.raises(ValidationError, match="naive"):
        ruleset.route(incident(), at=datetime(2025, 3, 3, 9), callers=CALLERS)
    with pytest.raises(ValidationError, match="pass callers="):
        ruleset.route(incident(), at=MON)
    with pytest.raises(ValidationError, match="must be a Caller"):
        ruleset.route(incident(), at=MON, callers={"mia": {"vip": True}})  # type: ignore[dict-item]
    problem = Problem.open(id="PRB1", title="x", impact=2, urgency=2, at=MON, by="pm")
    with pytest.raises(ValidationError, match="routes Incident records, not Problem"):
        ruleset.route(problem, at=MON, callers=CALLERS)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="vip flag"):
        Caller(vip="yes")  # type: ignore[arg-type]
    # Rules that never read the caller need no directory.
    assert rules(rules=[]).route(incident(), at=MON).group == "service-desk"


# --------------------------------------------------------------------------- escalation

RESOLUTION = SLADefinition.incident_resolution(dict.fromkeys(Priority, 8 * H), OFFICE)
TIERS = (("network", "service-desk"), ("l2", "l2-b"), "l3")


def escalator(**options: Any) -> Escalator:
    spec: dict[str, Any] = {"tiers": TIERS, "clocks": [RESOLUTION], "groups": GROUPS}
    return Escalator(**(spec | options))


def test_an_incident_is_escalated_when_its_resolution_clock_reaches_75_percent() -> None:
    esc = escalator()
    inc = incident(assignment_group="service-desk").start(at=MON + H, by="ana")
    assert esc.due(inc, at=MON + H) is None
    crossing = MON + 6 * H  # 75 % of 8 business hours from Mon 09:00
    assert esc.next_check(inc, at=MON + H) == crossing
    assert esc.due(inc, at=crossing - timedelta(microseconds=1)) is None
    due = esc.due(inc, at=crossing)
    assert due is not None
    assert (due.from_tier, due.to_tier, due.to_group, due.crossed_at) == (1, 2, "l2", crossing)
    up = esc.escalate(inc, at=crossing, by="scheduler")
    event = up.history[-1]
    assert (event.type, event.kind, event.group, event.by) == (
        "incident.escalated", "functional", "l2", "scheduler",
    )  # fmt: skip
    assert (up.assignment_group, up.tier) == ("l2", 2)
    # At L2 the clock is past 75 % already: nothing more is due on it by time alone.
    assert esc.due(up, at=crossing + 8 * H) is None
    assert esc.next_check(up, at=crossing) is None
    assert esc.escalate(up, at=crossing + H, by="scheduler") is up


def test_thresholds_per_step_carry_a_record_up_every_tier() -> None:
    esc = escalator(threshold=[Fraction(1, 2), 1])
    inc = incident(assignment_group="network")
    first = esc.next_check(inc, at=MON)
    assert first == MON + 4 * H
    inc = esc.escalate(inc, at=first, by="s")
    second = esc.next_check(inc, at=first)
    assert second == MON + 8 * H  # 100 %: the due instant itself
    inc = esc.escalate(inc, at=second, by="s")
    assert (inc.assignment_group, inc.tier) == ("l3", 3)


def test_the_top_tier_is_never_escalated_further() -> None:
    esc = escalator()
    inc = incident(assignment_group="l3")
    assert esc.next_check(inc, at=MON) is None
    assert esc.due(inc, at=MON + timedelta(days=7)) is None
    assert esc.escalate(inc, at=MON + timedelta(days=7), by="s") is inc


def test_a_paused_clock_does_not_escalate() -> None:
    esc = escalator()
    held = incident(assignment_group="service-desk").hold(
        reason="awaiting_vendor", at=MON + 2 * H, by="ana"
    )
    assert esc.next_check(held, at=MON + 2 * H) is None
    assert esc.due(held, at=MON + timedelta(days=30)) is None
    resumed = held.resume(at=MON + timedelta(days=1), by="ana")  # Tue 09:00, 2 h counted
    assert esc.next_check(resumed, at=resumed.updated_at) == resumed.updated_at + 4 * H


def test_records_outside_the_tiers_or_finished_are_left_alone() -> None:
    esc = escalator()
    assert esc.next_check(incident(), at=MON) is None  # no group
    assert esc.next_check(incident(assignment_group="vip-desk"), at=MON) is None
    resolved = incident(assignment_group="network").resolve(
        code="solution_provided", notes="done", at=MON + H, by="nia"
    )
    assert esc.due(resolved, at=MON + 7 * H) is None
    assert esc.tier("l2-b") == 2
    assert esc.tier("vip-desk") is None


def test_a_record_brought_back_down_is_not_bounced_up_by_an_old_crossing() -> None:
    esc = escalator()
    inc = incident(assignment_group="network")
    inc = esc.escalate(inc, at=MON + 6 * H, by="s")
    back = inc.assign(group="service-desk", at=MON + 7 * H, by="lea")  # L2 sends it back
    assert esc.due(back, at=MON + 7 * H) is None
    assert esc.next_check(back, at=MON + 7 * H) is None


def test_a_crossing_at_the_instant_of_arrival_belongs_to_the_tier_it_came_from() -> None:
    esc = escalator()
    inc = incident(assignment_group="vip-desk").assign(group="network", at=MON + 6 * H, by="v")
    assert esc.due(inc, at=MON + 6 * H) is None
    moved_within = incident(assignment_group="service-desk").assign(
        group="network", at=MON + 5 * H, by="ana"
    )
    due = esc.due(moved_within, at=MON + 6 * H)  # same tier: the stay did not restart
    assert due is not None
    assert due.from_group == "network"


def test_other_practices_are_escalated_through_assign() -> None:
    esc = escalator(clocks=[SLADefinition.resolution(dict.fromkeys(Priority, 4 * H), OFFICE)])
    task = Task.open(id="T1", title="Renew", project="web", impact=2, urgency=2, at=MON, by="o")
    task = task.assign(group="service-desk", at=MON, by="o")
    at = esc.next_check(task, at=MON)
    assert at == MON + 3 * H
    up = esc.escalate(task, at=at, by="scheduler")
    assert (up.history[-1].type, up.assignment_group, up.reassignment_count) == (
        "task.assigned", "l2", 2,
    )  # fmt: skip


def test_the_earliest_of_several_clocks_drives_the_escalation() -> None:
    short = SLADefinition.resolution(dict.fromkeys(Priority, 2 * H), OFFICE, name="OLA")
    esc = escalator(clocks=[RESOLUTION, short])
    inc = incident(assignment_group="network")
    assert esc.next_check(inc, at=MON) == MON + 90 * M
    due = esc.due(inc, at=MON + 7 * H)
    assert due is not None
    assert (due.clock, due.crossed_at) == ("OLA", MON + 90 * M)
    assert due.reason == (
        "OLA reached 75 % of its target at 2025-03-03 10:30 UTC while with L1 (network): "
        "escalated to L2 (l2)"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tiers": ["network", "ghosts"]}, "'ghosts' is not a declared group"),
        ({"tiers": ["network", "l2", "network"]}, "'network' appears twice"),
        ({"tiers": [("l2", "l2"), "l3"]}, "'l2' appears twice"),
        ({"tiers": ["network"]}, "at least two tiers"),
        ({"tiers": "network"}, "tiers are a sequence"),
        ({"tiers": ["network", ()]}, "non-empty sequence"),
        ({"tiers": ["network", {"l2", "l2-b"}]}, "in order"),
        ({"threshold": 0}, r"lie in \(0, 1\]"),
        ({"threshold": 1.5}, r"lie in \(0, 1\]"),
        ({"threshold": -0.25}, r"lie in \(0, 1\]"),
        ({"threshold": "3/4 of it"}, "fraction of the target"),
        ({"threshold": float("nan")}, "fraction of the target"),
        ({"threshold": True}, "fraction of the target"),
        ({"threshold": [0.5, 0.75, 1]}, "one per step up"),
        ({"threshold": [0.5, 2]}, r"lie in \(0, 1\]"),
        ({"clocks": []}, "one or more SLADefinition"),
        ({"clocks": ["resolution"]}, "one or more SLADefinition"),
    ],
)
def test_an_escalator_that_cannot_work_is_refused_when_defined(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        escalator(**options)


def test_bad_escalator_calls_are_validation_errors() -> None:
    esc = escalator()
    inc = incident(assignment_group="network").start(at=MON + H, by="nia")
    for call in (esc.due, esc.next_check):
        with pytest.raises(ValidationError, match="naive"):
            call(inc, at=datetime(2025, 3, 3, 12))
        with pytest.raises(ValidationError, match="before its last event"):
            call(inc, at=MON)
    with pytest.raises(ValidationError, match="naive"):
        esc.escalate(inc, at=datetime(2025, 3, 3, 12), by="s")
    with pytest.raises(ValidationError, match="assignable"):
        esc.due("INC1", at=MON)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- next_check vs polling

POLL_GROUPS = ("network", "l2", "l2-b", "l3", "vip-desk")
ACTIONS = ("start", "hold", "resume", "resolve", "reopen", "assign", "reprioritize", "comment")


def act(record: Incident, action: str, value: int, at: datetime) -> Incident:
    """One of the record's own verbs (the same in both loops); skipped where not allowed."""
    if action not in record.workflow.allowed(record, code="solution_provided"):
        return record
    by = "agent"
    if action == "hold":
        return record.hold(reason="awaiting_vendor", at=at, by=by)
    if action == "resolve":
        return record.resolve(code="solution_provided", notes="ok", at=at, by=by)
    if action == "reopen":
        return record.reopen(reason="back", at=at, by=by)
    if action == "assign":
        return record.assign(group=POLL_GROUPS[value % len(POLL_GROUPS)], at=at, by=by)
    if action == "reprioritize":
        return record.reprioritize(impact=1 + value % 3, reason="r", at=at, by=by)
    if action == "comment":
        return record.comment(text="note", at=at, by=by)
    return getattr(record, action)(at=at, by=by)  # type: ignore[no-any-return]


histories = st.lists(
    st.tuples(st.integers(1, 120), st.sampled_from(ACTIONS), st.integers(0, 20)), max_size=8
)
# Targets in whole multiples of 4 minutes: every threshold (½, ¾, 1) lands on a minute, the
# poll's grain, so both loops can escalate at the very same instants.
poll_targets = st.fixed_dictionaries(
    {p: st.integers(2, 60).map(lambda n: 4 * n * M) for p in Priority}
)


@settings(max_examples=40)
@given(
    histories,
    poll_targets,
    poll_targets,
    st.lists(st.sampled_from((Fraction(1, 2), Fraction(3, 4), Fraction(1))), min_size=2,
             max_size=2),
    st.sampled_from(("network", "l2", "vip-desk")),
    st.booleans(),
)  # fmt: skip
def test_waking_at_next_check_escalates_exactly_when_polling_every_minute_does(
    history: list[tuple[int, str, int]],
    targets: dict[Priority, timedelta],
    ola_targets: dict[Priority, timedelta],
    thresholds: list[Fraction],
    first_group: str,
    office_hours: bool,
) -> None:
    calendar = OFFICE if office_hours else BusinessCalendar.always(tz="UTC")
    esc = Escalator(
        tiers=["network", ("l2", "l2-b"), "l3"],
        clocks=[
            SLADefinition.incident_resolution(targets, calendar),
            SLADefinition.incident_ola("l2", ola_targets, calendar),
        ],
        groups=GROUPS,
        threshold=thresholds,
    )
    start = incident(assignment_group=first_group)
    events, t = [], MON
    for gap, action, value in history:
        t += gap * M
        events.append((t, action, value))
    horizon = t + 10 * H

    # The scheduler: it wakes when the record changes and at the instants next_check names.
    woken, record, now = [], start, MON

    def wake_until(end: datetime, *, inclusive: bool) -> None:
        nonlocal record, now
        while (wake := esc.next_check(record, at=now)) is not None and (
            wake < end or (inclusive and wake == end)
        ):
            assert wake >= now
            escalated = esc.escalate(record, at=wake, by="scheduler")
            assert escalated.version == record.version + 1  # a wake-up that was due
            record, now = escalated, wake
            woken.append(wake)

    for when, action, value in events:
        wake_until(when, inclusive=False)
        record, now = act(record, action, value, when), when
    wake_until(horizon, inclusive=True)
    scheduled = record

    # The poll: the record's own events at each minute first, then ask whether one is due.
    polled, record, pending = [], start, list(events)
    minute = MON
    while minute <= horizon:
        while pending and pending[0][0] == minute:
            _, action, value = pending.pop(0)
            record = act(record, action, value, minute)
        if esc.due(record, at=minute) is not None:
            record = esc.escalate(record, at=minute, by="scheduler")
            polled.append(minute)
        minute += M

    assert woken == polled
    assert scheduled.history == record.history
    assert all(e.by != "scheduler" or e.type == "incident.escalated" for e in record.history)
