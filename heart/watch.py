"""``heart status --watch``: the daemon's status as a live terminal view.

``render()`` turns one status answer (the dict ``heart status --json``
prints) into a rich renderable; it depends on nothing else, so the tests
render it at a fixed width.  ``run()`` asks the daemon every few seconds and
redraws in place (rich.live) until ^C.  When the daemon does not answer,
the view keeps the last good data, dimmed, under a red "daemon unreachable"
line, and recovers when it answers again.

On a terminal of 80 columns nothing wraps: every column has a width planned
from its contents, and what does not fit is cut with an ellipsis.  When the
output is not a terminal (``heart status --watch | cat``), each refresh
prints a plain-text frame followed by a blank line, without escape codes.

Besides the daemon's fields, the status dict may carry ``events``: the
newest journal events (dicts as ``heart events --json`` prints them); the
view shows the last few of them.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.styled import Styled
from rich.table import Table
from rich.text import Text

from heart import journal
from heart.status import is_live

GAP = 2                 # spaces between two columns
MAX_EVENTS = 5          # journal events shown at the bottom
LINKS_NAMED_MAX = 18    # wider LINKS cells show states only (up/down), and a legend

STATE_STYLE = {"self": "bold cyan", "up": "green", "late": "yellow", "down": "bold red",
               "unknown": "magenta"}
LINK_STYLE = {"up": "green", "down": "red", "local": "dim"}
HERE_STYLE = {"started": "green", "starting": "yellow", "stopping": "yellow",
              "stopped": "dim", "failed": "bold red"}


# ----------------------------------------------------------------------------
# Cells and widths


def _heard(ms: Any) -> str:
    if ms is None:
        return "-"
    ms = float(ms)
    if ms < 1000:
        return f"{ms:.0f}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.0f}h"


def _uptime(s: Any) -> str:
    try:
        s = float(s)
    except (TypeError, ValueError):
        return "?"
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _fit(natural: list[int], minimum: list[int], budget: int) -> list[int]:
    """Column widths: each column's natural width, and while the total is over
    the budget, the widest column that may still shrink loses a cell."""
    widths = list(natural)
    while sum(widths) > budget:
        shrinkable = [i for i, w in enumerate(widths) if w > minimum[i]]
        if not shrinkable:
            break
        i = max(shrinkable, key=lambda k: (widths[k] - minimum[k], widths[k]))
        widths[i] -= 1
    return widths


def _table(headers: list[str], rows: list[list[Text]], minimum: list[int], width: int,
           right: frozenset[int] = frozenset()) -> Table:
    """A borderless table of at most ``width`` cells, no cell wrapped."""
    natural = [max([cell_len(h)] + [r[i].cell_len for r in rows])
               for i, h in enumerate(headers)]
    minimum = [min(m, n) for m, n in zip(minimum, natural)]
    widths = _fit(natural, minimum, width - GAP * (len(headers) - 1))
    t = Table(box=None, padding=(0, GAP // 2), pad_edge=False, show_edge=False,
              header_style="bold", expand=False, collapse_padding=False)
    for i, (h, w) in enumerate(zip(headers, widths)):
        t.add_column(h, width=w, no_wrap=True, overflow="ellipsis",
                     justify="right" if i in right else "left")
    for r in rows:
        t.add_row(*r)
    return t


def _join(parts: list[Text], sep: str = " ") -> Text:
    return Text(sep).join(parts) if parts else Text("-")


def _links_cell(node: dict, names: bool = True) -> Text:
    """lo:up eth1:down, or without the names (up/down) when they are long."""
    if node.get("state") == "self":
        return Text("-")
    links = node.get("links") or {}
    if not names:
        return _join([Text(state, LINK_STYLE.get(state, "")) for state in links.values()],
                     "/")
    return _join([Text.assemble(f"{name}:", (state, LINK_STYLE.get(state, "")))
                  for name, state in links.items()])


def _lost_cell(node: dict) -> Text:
    lost = node.get("lost")
    if node.get("state") == "self" or not lost:
        return Text("-")
    total = sum(int(v) for v in lost.values())
    return Text(str(total), style="yellow" if total else "")


def _holds_cell(node: dict) -> Text:
    held = node.get("held") or {}
    if not held:
        return Text("-")
    alive = is_live(node)
    parts = [Text(u) if s == "started" else Text(f"{u}({s})", style="yellow")
             for u, s in held.items()]
    cell = Text(",").join(parts)
    if not alive:             # what its last record said; it may still run
        cell = Text.assemble(("last:", "dim"), cell)
    return cell


def _state_cell(node: dict) -> Text:
    state = str(node.get("state", "?"))
    cell = Text(state, style=STATE_STYLE.get(state, ""))
    if node.get("standby"):
        cell.append(" standby", style="yellow")
    return cell


def _owner_cell(owner: Any) -> Text:
    if isinstance(owner, list):
        return Text("CONFLICT:" + ",".join(owner), style="bold red")
    return Text(owner or "-", style="" if owner else "dim")


# ----------------------------------------------------------------------------
# The view


def _cut(text: str, n: int) -> str:
    """text in at most n cells, an ellipsis at the end if cut."""
    if cell_len(text) <= n:
        return text
    t = Text(text)
    t.truncate(max(n, 1), overflow="ellipsis")
    return t.plain


def _header(st: dict, width: int, now: float | None) -> list[Text]:
    """The first line: cluster, this node, quorum, uptime and the clock; the
    names are cut before the quorum or the clock is.  The second: the
    quorum's reason."""
    q = st.get("quorum") or {}
    quorate = bool(q.get("quorate"))
    clock = _clock(now) if now is not None else ""
    cluster, node = str(st.get("cluster", "?")), str(st.get("node", "?"))
    ident = f" (id {st.get('cluster_id', '?')})"
    tail = f"  up {_uptime(st.get('uptime_s'))}"
    fixed = (cell_len("cluster ") + cell_len(ident) + cell_len("  node ")
             + cell_len("  quorum ") + (3 if quorate else 2) + cell_len(tail)
             + (cell_len(clock) + 1 if clock else 0))
    room = width - fixed
    if cell_len(cluster) + cell_len(node) > room:
        node_room = max(room - min(cell_len(cluster), room // 2), 4)
        node = _cut(node, node_room)
        cluster = _cut(cluster, max(room - cell_len(node), 4))
    left = Text.assemble(
        ("cluster ", "dim"), (cluster, "bold"), ident, ("  node ", "dim"),
        (node, "bold cyan"), ("  quorum ", "dim"),
        ("yes", "bold green") if quorate else ("NO", "bold red"), (tail, ""))
    left.truncate(max(width - (cell_len(clock) + 1 if clock else 0), 1),
                  overflow="ellipsis")
    line = left
    if clock:
        line = Text.assemble(left, " " * (width - left.cell_len - cell_len(clock)),
                             (clock, "bold"))
    reason = Text.assemble(("quorum: ", "dim"),
                           (str(q.get("reason", "?")), "green" if quorate else "red"))
    reason.truncate(width, overflow="ellipsis")
    return [line, reason]


def _nodes(st: dict, width: int) -> list[RenderableType]:
    nodes = st.get("nodes") or []
    # Link names that would not fit leave the cells; a legend names them.
    named = max([_links_cell(n).cell_len for n in nodes] + [0]) <= LINKS_NAMED_MAX
    rows = []
    for n in nodes:
        load = (n.get("attributes") or {}).get("load1")
        rows.append([Text(str(n.get("name", "?")), style="bold" if n.get("state") == "self"
                          else ""),
                     _state_cell(n), _links_cell(n, named),
                     Text("-" if n.get("state") == "self" else _heard(n.get("last_heard_ms"))),
                     _lost_cell(n), Text("-" if load is None else f"{load:.2f}"),
                     _holds_cell(n)])
    out: list[RenderableType] = [
        _table(["NODE", "STATE", "LINKS", "HEARD", "LOST", "LOAD", "HOLDS"], rows,
               minimum=[8, 5, 8, 5, 4, 4, 8], width=width, right=frozenset({3, 4, 5}))]
    if not named:
        order = [str(lk.get("name")) for lk in st.get("links") or []]
        if not order:
            order = next((list(n.get("links") or {}) for n in nodes
                          if n.get("state") != "self"), [])
        legend = Text("LINKS: " + "/".join(order), style="dim")
        legend.truncate(width, overflow="ellipsis")
        out.append(legend)
    return out


def _failed_on(st: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in st.get("nodes") or []:
        for unit in n.get("failed") or []:
            out.setdefault(unit, []).append(str(n.get("name")))
    return out


def _resources(st: dict, width: int) -> Table:
    failed = _failed_on(st)
    grouped = any(r.get("unit") != r.get("resource") for r in st["resources"])
    rows = []
    for r in st["resources"]:
        owner, placed = r.get("owner"), r.get("placement")
        here = str(r.get("local_state", "?"))
        fails = failed.get(r.get("unit"), [])
        row = [Text(str(r.get("resource")))]
        if grouped:
            unit = r.get("unit")
            row.append(Text(unit if unit != r.get("resource") else "-"))
        moving = placed and not isinstance(owner, list) and placed != owner
        row += [_owner_cell(owner),
                Text(placed or "-", style="yellow" if moving else ""),
                Text(here, style=HERE_STYLE.get(here, "")),
                Text(",".join(fails), style="red") if fails else Text("-")]
        rows.append(row)
    headers = ["RESOURCE"] + (["GROUP"] if grouped else []) + ["OWNER", "PLACED", "HERE",
                                                              "FAILED ON"]
    minimum = [8] + ([6] if grouped else []) + [6, 6, 7, 6]
    return _table(headers, rows, minimum=minimum, width=width)


def _events(st: dict, width: int) -> list[Text]:
    out = [Text("EVENTS", style="bold")]
    for ev in list(st["events"])[-MAX_EVENTS:]:
        subject = _cut(journal.event_subject(ev), 14)
        summary = journal.event_summary(ev)
        try:
            stamp = _clock(float(ev["time"]))
        except (KeyError, TypeError, ValueError):
            stamp = "--:--:--"
        line = Text.assemble((stamp, "dim"), " ", (f"{ev.get('kind', '?'):<16}", "cyan"),
                             " ", f"{subject:<14}", " ", summary)
        line.truncate(width, overflow="ellipsis")
        out.append(line)
    return out


def render(status: dict | None, *, width: int = 80, now: float | None = None,
           error: str | None = None, as_of: float | None = None) -> RenderableType:
    """The view of one status answer, at most ``width`` cells wide.

    now: the time shown in the header (none if None).  error: the daemon did
    not answer; ``status`` is then the last good answer (or None), shown
    dimmed, and ``as_of`` when it was received."""
    width = max(int(width), 20)
    parts: list[RenderableType] = []
    if error is not None:
        line = Text.assemble(("daemon unreachable: ", "bold red"), (str(error), "red"))
        if as_of is not None:
            line.append(f" (data from {_clock(as_of)})", style="dim")
        line.truncate(width, overflow="ellipsis")
        parts.append(line)
        if status is None:
            parts.append(Text("waiting for the daemon to answer" +
                              (f"  {_clock(now)}" if now is not None else ""), style="dim"))
            return Group(*parts)
    if status is None:
        return Group(Text("no status yet", style="dim"))
    body: list[RenderableType] = [*_header(status, width, now), Text(""),
                                  *_nodes(status, width)]
    if status.get("resources"):
        body += [Text(""), _resources(status, width)]
    if status.get("events"):
        body += [Text(""), *_events(status, width)]
    if error is not None:
        parts.append(Styled(Group(*body), "dim"))
    else:
        parts += body
    return Group(*parts)


# ----------------------------------------------------------------------------
# The loop


def run(fetch: Callable[[], dict], interval: float, console: Console | None = None, *,
        sleep: Callable[[float], None] = time.sleep) -> int:
    """Ask ``fetch()`` for a status every ``interval`` seconds and show it until
    ^C (then 0).  fetch raising OSError (heart.control.ControlError is one)
    means the daemon is unreachable; the loop goes on."""
    console = console or Console()
    last: dict | None = None
    as_of: float | None = None

    def frame() -> RenderableType:
        nonlocal last, as_of
        error = None
        try:
            st = dict(fetch())
            st.pop("ok", None)
            last, as_of = st, time.time()
        except OSError as exc:
            error = str(exc) or exc.__class__.__name__
        return render(last, width=console.width, now=time.time(), error=error, as_of=as_of)

    try:
        if console.is_terminal and not console.is_dumb_terminal:
            with Live(console=console, auto_refresh=False, transient=False,
                      redirect_stdout=False, redirect_stderr=False) as live:
                while True:
                    live.update(frame(), refresh=True)
                    sleep(interval)
        else:
            # Not a terminal: rich.live would print only the last frame, so
            # each refresh is a plain frame and a blank line.
            while True:
                console.print(frame())
                console.print()
                if console.file is not None:
                    console.file.flush()
                sleep(interval)
    except KeyboardInterrupt:
        return 0
