"""Placement: the rules one by one, then hypothesis properties over random
views (at most one acquirer, nothing without quorum, determinism, and a
simulation of rounds that must converge without ever running a unit twice)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heart.placement import Decision, NodeView, Plan, UnitSpec, View, place, plan

PROPS = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


def nv(name: str, up: bool = True, standby: bool = False, held=(), failed=()) -> NodeView:
    return NodeView(name, up, standby, frozenset(held), frozenset(failed))


def view(*nodes: NodeView, quorate: bool = True, moves=None) -> View:
    return View({n.name: n for n in nodes}, quorate, dict(moves or {}))


WEB = UnitSpec("web", ("alpha", "beta", "gamma"), auto_failback=True)
STICKY = UnitSpec("web", ("alpha", "beta", "gamma"), auto_failback=False)


# ---------------------------------------------------------------- place()

def test_preference_order():
    d = place([WEB], view(nv("alpha"), nv("beta"), nv("gamma")))["web"]
    assert d == Decision("alpha", "alpha is its most preferred node")
    d = place([WEB], view(nv("alpha", up=False), nv("beta"), nv("gamma")))["web"]
    assert d.owner == "beta"
    assert d.reason == "beta is the first available node in its preference order (alpha is down)"
    # Order comes from the unit, not from the view.
    other = UnitSpec("db", ("gamma", "alpha"), True)
    assert place([other], view(nv("alpha"), nv("beta"), nv("gamma")))["db"].owner == "gamma"


def test_nodes_outside_the_preference_list_never_run_it():
    unit = UnitSpec("db", ("alpha", "beta"), True)
    d = place([unit], view(nv("alpha", up=False), nv("beta", up=False), nv("gamma")))["db"]
    assert d.owner is None
    assert d.reason == "no node can run it: alpha is down and beta is down"


def test_standby_node_is_skipped():
    d = place([WEB], view(nv("alpha", standby=True), nv("beta"), nv("gamma")))["web"]
    assert d.owner == "beta"
    assert "alpha is in standby" in d.reason


def test_failed_unit_is_not_placed_there_again():
    d = place([WEB], view(nv("alpha", failed={"web"}), nv("beta"), nv("gamma")))["web"]
    assert d.owner == "beta"
    assert "web failed on alpha" in d.reason
    # Failed for another unit only: no effect.
    d = place([WEB], view(nv("alpha", failed={"db"}), nv("beta"), nv("gamma")))["web"]
    assert d.owner == "alpha"


def test_no_candidate_gives_no_owner_and_says_why():
    d = place([WEB], view(nv("alpha", up=False), nv("beta", standby=True),
                          nv("gamma", failed={"web"})))["web"]
    assert d.owner is None
    assert d.reason == ("no node can run it: alpha is down, beta is in standby and "
                        "web failed on gamma")
    assert place([UnitSpec("x", (), True)], view(nv("alpha")))["x"].owner is None


def test_move_to_a_candidate_wins():
    v = view(nv("alpha"), nv("beta"), nv("gamma"), moves={"web": "gamma"})
    assert place([WEB], v)["web"] == Decision("gamma", "the operator moved web to gamma")
    # A move beats auto_failback off too.
    v = view(nv("alpha"), nv("beta", held={"web"}), nv("gamma"), moves={"web": "gamma"})
    assert place([STICKY], v)["web"].owner == "gamma"


def test_move_to_an_unavailable_node_is_ignored_until_it_can_run_it():
    v = view(nv("alpha"), nv("beta"), nv("gamma", up=False), moves={"web": "gamma"})
    d = place([WEB], v)["web"]
    assert d.owner == "alpha"
    assert d.reason.endswith("; the move to gamma waits: gamma is down")
    v = view(nv("alpha"), nv("beta"), nv("delta"), moves={"web": "delta"})
    d = place([WEB], v)["web"]
    assert d.owner == "alpha" and "not in its nodes list" in d.reason


def test_auto_failback_on_returns_to_the_preferred_node():
    v = view(nv("alpha"), nv("beta", held={"web"}), nv("gamma"))
    assert place([WEB], v)["web"].owner == "alpha"


def test_auto_failback_off_keeps_the_current_holder():
    v = view(nv("alpha"), nv("beta", held={"web"}), nv("gamma"))
    d = place([STICKY], v)["web"]
    assert d == Decision("beta", "beta already holds it and auto_failback is off")
    # No holder: preference order as usual.
    assert place([STICKY], view(nv("alpha"), nv("beta"), nv("gamma")))["web"].owner == "alpha"
    # A holder that can no longer run it does not keep it.
    v = view(nv("alpha"), nv("beta", standby=True, held={"web"}), nv("gamma"))
    assert place([STICKY], v)["web"].owner == "alpha"


def test_no_quorum_places_nothing():
    v = view(nv("alpha"), nv("beta"), quorate=False)
    assert place([WEB], v) == {"web": Decision(None, "this partition has no quorum")}


def test_two_holders_after_a_healed_partition():
    both = view(nv("alpha", held={"web"}), nv("beta", held={"web"}), nv("gamma"))
    # auto_failback off: the more preferred holder keeps it, the other releases.
    d = place([STICKY], both)["web"]
    assert d.owner == "alpha" and "also held by beta" in d.reason
    assert plan([STICKY], both, "alpha") == Plan((), (), {})
    assert plan([STICKY], both, "beta") == Plan(("web",), (), {})
    # Both hold it but gamma is preferred: both release, gamma waits for them.
    unit = UnitSpec("web", ("gamma", "alpha", "beta"), True)
    assert place([unit], both)["web"].owner == "gamma"
    assert plan([unit], both, "alpha").release == ("web",)
    assert plan([unit], both, "beta").release == ("web",)
    p = plan([unit], both, "gamma")
    assert p.acquire == () and p.wait == {"web": "alpha and beta still hold it"}


# ---------------------------------------------------------------- plan()

def test_two_phase_failback():
    """alpha returns; beta holds web.  beta releases, alpha waits; once beta
    publishes that it no longer holds web, alpha acquires."""
    v = view(nv("alpha"), nv("beta", held={"web"}), nv("gamma"))
    assert plan([WEB], v, "beta") == Plan(release=("web",), acquire=(), wait={})
    assert plan([WEB], v, "alpha") == Plan(release=(), acquire=(),
                                           wait={"web": "beta still holds it"})
    assert plan([WEB], v, "gamma") == Plan((), (), {})
    v = view(nv("alpha"), nv("beta"), nv("gamma"))
    assert plan([WEB], v, "alpha") == Plan(release=(), acquire=("web",), wait={})


def test_a_down_holder_does_not_block_failover():
    v = view(nv("alpha", up=False, held={"web"}), nv("beta"), nv("gamma"))
    assert plan([WEB], v, "beta").acquire == ("web",)


def test_holding_what_is_placed_on_me_is_a_no_op():
    v = view(nv("alpha", held={"web"}), nv("beta"))
    assert plan([WEB], v, "alpha") == Plan((), (), {})


def test_no_quorum_policy_release_and_freeze():
    db = UnitSpec("db", ("alpha",), True)
    v = view(nv("alpha", held={"web", "db", "gone"}), nv("beta"), quorate=False)
    assert plan([WEB, db], v, "alpha") == Plan(("web", "db", "gone"), (), {})
    assert plan([WEB, db], v, "alpha", policy="release").acquire == ()
    assert plan([WEB, db], v, "alpha", policy="freeze") == Plan((), (), {})
    # Nothing is ever acquired without quorum, whatever the policy.
    v = view(nv("alpha"), nv("beta"), quorate=False)
    for policy in ("release", "freeze"):
        assert plan([WEB, db], v, "alpha", policy=policy) == Plan((), (), {})


def test_units_no_longer_configured_are_released():
    v = view(nv("alpha", held={"web", "old"}), nv("beta"))
    assert plan([WEB], v, "alpha").release == ("old",)


def test_standby_and_failed_release():
    v = view(nv("alpha", standby=True, held={"web"}), nv("beta"))
    assert plan([WEB], v, "alpha").release == ("web",)
    assert plan([WEB], v, "beta").wait == {"web": "alpha still holds it"}
    v = view(nv("alpha", failed={"web"}, held={"web"}), nv("beta"))
    assert plan([WEB], v, "alpha").release == ("web",)


def test_move_hands_over_in_two_phases():
    v = view(nv("alpha", held={"web"}), nv("beta"), nv("gamma"), moves={"web": "gamma"})
    assert plan([WEB], v, "alpha").release == ("web",)
    assert plan([WEB], v, "gamma").wait == {"web": "alpha still holds it"}
    v = view(nv("alpha"), nv("beta"), nv("gamma"), moves={"web": "gamma"})
    assert plan([WEB], v, "gamma").acquire == ("web",)


def test_plan_errors_name_the_problem():
    v = view(nv("alpha"))
    with pytest.raises(ValueError, match="'delta' is not in the view"):
        plan([WEB], v, "delta")
    with pytest.raises(ValueError, match="'ignore': expected one of release, freeze"):
        plan([WEB], v, "alpha", policy="ignore")


# ---------------------------------------------------------------- properties

POOL = ("alpha", "beta", "gamma", "delta", "epsilon")


@st.composite
def scenarios(draw, valid_start: bool = False):
    """(units, view): random nodes, preference lists, holders and failures.
    valid_start: at most one up node holds each unit (no split brain yet)."""
    n = draw(st.integers(1, len(POOL)))
    names = list(POOL[:n])
    unit_names = [f"u{i}" for i in range(draw(st.integers(1, 4)))]
    units = []
    for u in unit_names:
        prefs = draw(st.lists(st.sampled_from(names), unique=True, max_size=n))
        units.append(UnitSpec(u, tuple(prefs), draw(st.booleans())))
    nodes = {}
    for name in names:
        nodes[name] = NodeView(
            name, draw(st.booleans()), draw(st.booleans()),
            frozenset(draw(st.lists(st.sampled_from(unit_names), unique=True))),
            frozenset(draw(st.lists(st.sampled_from(unit_names), unique=True))))
    if valid_start:
        seen: set[str] = set()
        for name in names:
            node = nodes[name]
            if node.up:
                held = node.held - seen
                seen |= held
                nodes[name] = NodeView(name, True, node.standby, held, node.failed)
    moves = draw(st.dictionaries(st.sampled_from(unit_names), st.sampled_from(names)))
    return units, View(nodes, draw(st.booleans()), moves)


def up_holders(v: View, unit: str) -> list[str]:
    return [n for n, x in v.nodes.items() if x.up and unit in x.held]


@PROPS
@given(scenarios(), st.sampled_from(("release", "freeze")))
def test_prop_at_most_one_acquirer_and_never_beside_an_up_holder(case, policy):
    units, v = case
    plans = {n: plan(units, v, n, policy=policy) for n, x in v.nodes.items() if x.up}
    for u in units:
        acquirers = [n for n, p in plans.items() if u.name in p.acquire]
        assert len(acquirers) <= 1
        for n in acquirers:
            assert [h for h in up_holders(v, u.name) if h != n] == []
            assert place(units, v)[u.name].owner == n


@PROPS
@given(scenarios(), st.sampled_from(("release", "freeze")))
def test_prop_no_acquire_without_quorum(case, policy):
    units, v = case
    v = View(v.nodes, False, v.moves)
    for n in v.nodes:
        p = plan(units, v, n, policy=policy)
        assert p.acquire == ()
        if policy == "freeze":
            assert p.release == ()
        else:
            assert set(p.release) == set(v.nodes[n].held)
    assert all(d.owner is None for d in place(units, v).values())


@PROPS
@given(scenarios(), st.randoms(use_true_random=False))
def test_prop_place_is_deterministic_and_order_independent(case, rnd):
    units, v = case
    first = place(units, v)
    assert place(units, v) == first
    names = list(v.nodes)
    rnd.shuffle(names)
    shuffled_nodes = {n: NodeView(n, v.nodes[n].up, v.nodes[n].standby,
                                  frozenset(sorted(v.nodes[n].held, reverse=True)),
                                  frozenset(v.nodes[n].failed)) for n in names}
    moves = list(v.moves.items())
    rnd.shuffle(moves)
    shuffled_units = list(units)
    rnd.shuffle(shuffled_units)
    again = place(shuffled_units, View(shuffled_nodes, v.quorate, dict(moves)))
    assert again == first
    for u in units:      # a unit's decision depends on that unit only
        assert place([u], v) == {u.name: first[u.name]}


def simulate(units, v: View, policy: str, rounds: int = 4, slow_stops: bool = False):
    """All up nodes share the view; each round every up node applies its
    plan: releases first, then acquires, then the held sets are published.
    slow_stops: a release is still running (and held) while the acquires of
    its round happen; only the two-phase rule then prevents a double start.
    Yields the view after every phase."""

    def apply(v: View, plans: dict[str, Plan], phase: str) -> View:
        nodes = dict(v.nodes)
        for n, p in plans.items():
            x = nodes[n]
            held = x.held - set(p.release) if phase == "release" else x.held | set(p.acquire)
            nodes[n] = NodeView(n, x.up, x.standby, held, x.failed)
        return View(nodes, v.quorate, v.moves)

    phases = ("acquire", "release") if slow_stops else ("release", "acquire")
    for _ in range(rounds):
        plans = {n: plan(units, v, n, policy=policy) for n, x in v.nodes.items() if x.up}
        for phase in phases:
            v = apply(v, plans, phase)
            yield phase, v


def check_converged(units, start: View, end: View, policy: str) -> None:
    decisions = place(units, end)
    for u in units:
        holders = up_holders(end, u.name)
        if not start.quorate and policy == "freeze":
            assert holders == up_holders(start, u.name)
        elif decisions[u.name].owner is None:
            assert holders == []
        else:
            assert holders == [decisions[u.name].owner]
    assert all(plan(units, end, n, policy=policy).acquire == ()
               and (not end.quorate and policy == "freeze"
                    or plan(units, end, n, policy=policy).release == ())
               for n, x in end.nodes.items() if x.up)


@PROPS
@given(scenarios(valid_start=True), st.sampled_from(("release", "freeze")), st.booleans())
def test_prop_rounds_converge_and_never_run_a_unit_twice(case, policy, slow_stops):
    units, v = case
    end = v
    for _phase, end in simulate(units, v, policy, slow_stops=slow_stops):
        for u in units:
            assert len(up_holders(end, u.name)) <= 1, (u.name, end)
    check_converged(units, v, end, policy)


@PROPS
@given(scenarios(valid_start=False))
def test_prop_healed_partition_resolves_in_the_first_release_phase(case):
    """From any state, even with several up nodes holding one unit, the
    first release phase leaves at most one holder (the owner), and from
    then on there are never two."""
    units, v = case
    v = View(v.nodes, True, v.moves)
    steps = list(simulate(units, v, "release"))
    owners = place(units, v)
    for _phase, state in steps:
        for u in units:
            holders = up_holders(state, u.name)
            assert len(holders) <= 1
            assert holders in ([], [owners[u.name].owner])
    check_converged(units, v, steps[-1][1], "release")


def test_a_holder_that_is_releasing_does_not_keep_the_unit():
    # alpha (more preferred) resumed from a pause and is stopping web while
    # beta took it over: beta keeps it, and nobody is told to stop twice.
    alpha = NodeView("alpha", True, False, frozenset({"web"}), frozenset(),
                     releasing=frozenset({"web"}))
    d = place([STICKY], view(alpha, nv("beta", held={"web"}), nv("gamma")))["web"]
    assert d.owner == "beta"
    p = plan([STICKY], view(alpha, nv("beta", held={"web"}), nv("gamma")), "beta")
    assert p.release == () and p.acquire == ()
