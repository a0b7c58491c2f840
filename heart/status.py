"""``heart status``: the daemon's status answer as a table for people.

Kept to 80 columns: the people reading it are often on a console."""
from __future__ import annotations

from typing import Any


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def _mem(attrs: dict) -> str:
    mb = attrs.get("mem_available_mb")
    if mb is None:
        return "-"
    return f"{mb / 1024:.1f}G" if mb >= 1024 else f"{mb}M"


def is_live(node: dict) -> bool:
    """The node runs now (this node, or a peer heard up or late); otherwise
    what it holds is what its last record said, and it may still run."""
    return node.get("state") in ("self", "up", "late")


def _links(node: dict) -> str:
    links = node.get("links") or {}
    if node.get("state") == "self":
        return "-"
    return " ".join(f"{k}:{v}" for k, v in links.items()) or "-"


def format_status(st: dict[str, Any]) -> str:
    q = st["quorum"]
    out = [f"cluster {st['cluster']} (id {st['cluster_id']})  node {st['node']}  "
           f"generation {st['generation']}  up {st['uptime_s']:.0f} s",
           f"quorum: {'yes' if q['quorate'] else 'NO'}, {q['reason']}", ""]
    rows = []
    for n in st["nodes"]:
        attrs = n.get("attributes") or {}
        load = attrs.get("load1")
        held = n.get("held") or {}
        holds = ",".join(u if s == "started" else f"{u}({s})" for u, s in held.items())
        if holds and not is_live(n):
            holds = "last:" + holds      # what its last record said; it may still run
        heard = n.get("last_heard_ms")
        rows.append([n["name"], str(n["id"]), n.get("state", "?")
                     + (" standby" if n.get("standby") else ""),
                     _links(n), "-" if heard is None else f"{heard:.0f}ms",
                     "-" if load is None else f"{load:.2f}", _mem(attrs), holds or "-"])
    out += _table(["NODE", "ID", "STATE", "LINKS", "HEARD", "LOAD", "MEM", "HOLDS"], rows)
    if st["resources"]:
        out.append("")
        rows = []
        for r in st["resources"]:
            owner = r["owner"]
            if isinstance(owner, list):
                owner = "CONFLICT:" + ",".join(owner)
            rows.append([r["resource"], r["unit"] if r["unit"] != r["resource"] else "-",
                         owner or "-", r["placement"] or "-", r["local_state"]])
        out += _table(["RESOURCE", "GROUP", "OWNER", "PLACED", "HERE"], rows)
    out.append("")
    rows = [[lk["name"], lk["kind"], str(lk["port"]),
             ",".join(lk["peers_up"]) or "-"] for lk in st["links"]]
    out += _table(["LINK", "KIND", "PORT", "PEERS UP"], rows)
    return "\n".join(out)
