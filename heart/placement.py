"""Placement: which node should run each unit, and what this node does now.

Every node computes placement itself, from the same replicated view (who is
up, in standby, holding what, failed what; quorum; the operator's moves).
``place()`` is a pure function of that view, so nodes that share a view agree
on every owner without exchanging a single extra message.

Agreement on the owner is not enough to avoid running a unit twice: the old
owner may still be stopping it.  ``plan()`` therefore implements a two-phase
handover.  A node releases what is placed elsewhere and publishes its held
set; the new owner acquires only once no other node that is up still lists
the unit as held.  A node that is down holds nothing it can act on; making
sure of that (fencing) is the daemon's job before it acquires.

This module takes plain values and never reads the configuration itself.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "POLICIES",
    "Decision",
    "NodeView",
    "Plan",
    "UnitSpec",
    "View",
    "place",
    "plan",
]

POLICIES = ("release", "freeze")


@dataclass(frozen=True)
class NodeView:
    """What the cluster knows about one configured node."""

    name: str
    up: bool
    standby: bool
    held: frozenset[str] = frozenset()     # units it holds, is acquiring or releasing
    failed: frozenset[str] = frozenset()   # units that failed there: not placed there again
    releasing: frozenset[str] = frozenset()  # of held, the units it is giving up


@dataclass(frozen=True)
class View:
    """The replicated cluster view placement decides on."""

    nodes: Mapping[str, NodeView]          # every configured node, by name
    quorate: bool
    moves: Mapping[str, str] = field(default_factory=dict)   # unit -> node the admin chose


@dataclass(frozen=True)
class UnitSpec:
    """A unit (a group, or a lone resource) as placement sees it."""

    name: str
    nodes: tuple[str, ...]                 # preference order, most preferred first
    auto_failback: bool = True


@dataclass(frozen=True)
class Decision:
    """Where a unit belongs.  ``reason`` reads as the end of "because ...":
    the daemon journals "www started on beta because <reason>"."""

    owner: str | None
    reason: str


@dataclass(frozen=True)
class Plan:
    """What one node does now."""

    release: tuple[str, ...]   # units I hold that I must give up
    acquire: tuple[str, ...]   # units I may take now
    wait: dict[str, str]       # unit placed on me -> why I may not take it yet


def _join(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _unavailable(unit: str, name: str, nv: NodeView | None) -> str | None:
    """Why node name cannot run unit, or None if it can."""
    if nv is None:
        return f"{name} is not in the view"
    if not nv.up:
        return f"{name} is down"
    if nv.standby:
        return f"{name} is in standby"
    if unit in nv.failed:
        return f"{unit} failed on {name}"
    return None


def _place_one(unit: UnitSpec, view: View) -> Decision:
    order = {name: i for i, name in enumerate(dict.fromkeys(unit.nodes))}
    excluded_by: list[tuple[str, str]] = []
    candidates: list[str] = []
    for name in order:
        why_not = _unavailable(unit.name, name, view.nodes.get(name))
        if why_not is None:
            candidates.append(name)
        else:
            excluded_by.append((name, why_not))
    excluded = [why for _, why in excluded_by]
    if not candidates:
        if not unit.nodes:
            return Decision(None, f"{unit.name} has no nodes to run on")
        return Decision(None, f"no node can run it: {_join(excluded)}")

    note = ""
    target = view.moves.get(unit.name)
    if target is not None:
        if target in candidates:
            return Decision(target, f"the operator moved {unit.name} to {target}")
        if target in unit.nodes:
            blocked = _unavailable(unit.name, target, view.nodes.get(target))
            note = f"; the move to {target} waits: {blocked}"
        else:
            note = f"; the move to {target} is ignored: not in its nodes list"

    if not unit.auto_failback:
        # A node that is already giving the unit up does not keep it.
        holders = [n for n in candidates if unit.name in view.nodes[n].held
                   and unit.name not in view.nodes[n].releasing]
        if holders:
            keeper = holders[0]
            extra = ""
            if len(holders) > 1:
                extra = f" (also held by {_join(holders[1:])}, less preferred)"
            return Decision(keeper, f"{keeper} already holds it and auto_failback is off"
                            f"{extra}{note}")

    first = candidates[0]
    ahead = [why for name, why in excluded_by if order[name] < order[first]]
    if not ahead:
        return Decision(first, f"{first} is its most preferred node{note}")
    return Decision(first, f"{first} is the first available node in its preference order "
                    f"({_join(ahead)}){note}")


def place(units: Sequence[UnitSpec], view: View) -> dict[str, Decision]:
    """The owner of every unit, and why.

    Without quorum no unit has an owner.  Candidates are the nodes of the
    unit's preference list that are up, not in standby and where it has not
    failed.  An operator's move wins if its target is a candidate.  With
    auto_failback off, a candidate that holds the unit keeps it (the most
    preferred one, should two hold it after a healed partition); otherwise
    the first candidate in preference order owns it.

    Pure and deterministic: it depends on the view's contents only, never on
    dict or set iteration order.
    """
    if not view.quorate:
        return {u.name: Decision(None, "this partition has no quorum") for u in units}
    return {u.name: _place_one(u, view) for u in units}


def plan(units: Sequence[UnitSpec], view: View, me: str, *, policy: str = "release") -> Plan:
    """What node ``me`` does now.

    Without quorum: policy "release" gives up everything held here and takes
    nothing; "freeze" changes nothing (resources keep running where they are,
    which is right only when the other side is known to be fenced or gone).

    With quorum: release every held unit whose owner is not me (including
    units no longer configured); acquire a unit placed on me that I do not
    hold once no other *up* node holds it; otherwise say in ``wait`` who
    still holds it.  Releases and acquires are in ``units`` order.
    """
    if policy not in POLICIES:
        raise ValueError(f"no-quorum policy {policy!r}: expected one of {', '.join(POLICIES)}")
    mine = view.nodes.get(me)
    if mine is None:
        raise ValueError(f"plan: node {me!r} is not in the view "
                         f"(nodes: {', '.join(sorted(view.nodes))})")
    names = [u.name for u in units]
    unknown = tuple(sorted(mine.held - set(names)))   # e.g. removed by a reload

    if not view.quorate:
        if policy == "freeze":
            return Plan(release=(), acquire=(), wait={})
        release = tuple(n for n in names if n in mine.held) + unknown
        return Plan(release=release, acquire=(), wait={})

    decisions = place(units, view)
    release: list[str] = []
    acquire: list[str] = []
    wait: dict[str, str] = {}
    for name in names:
        owner = decisions[name].owner
        if name in mine.held:
            if owner != me:
                release.append(name)
            continue
        if owner != me:
            continue
        others = sorted(n for n, nv in view.nodes.items()
                        if n != me and nv.up and name in nv.held)
        if others:
            verb = "holds" if len(others) == 1 else "hold"
            wait[name] = f"{_join(others)} still {verb} it"
        else:
            acquire.append(name)
    return Plan(release=tuple(release) + unknown, acquire=tuple(acquire), wait=wait)
