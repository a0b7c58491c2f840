"""Quality of service of the fixed and phi accrual failure detectors.

Replays recorded heartbeat arrival traces through libheart's own detectors
(hb_detector_init / hb_detector_heartbeat / hb_detector_down_at, called
through cffi, as tests/test_wire_cffi.py does) for a sweep of parameters and
measures the QoS metrics of Chen, Toueg and Aguilera ("On the quality of
service of failure detectors", 2002).  In our words:

- Detection time T_D: how long after the monitored process crashes the
  detector starts to suspect it for good.  Here a crash is placed just after
  each heartbeat the sender generated (every heartbeat of the trace is a
  crash point, after the warm-up); heartbeats already in flight still
  arrive, and the detector is then down at hb_detector_down_at() as it
  stands after the last of them, so T_D = max(0, down_at - crash) exactly,
  without simulating time.  We report the mean over all crash points and the
  99th percentile (CTA's bound on T_D is the worst case).  A crash at a
  uniformly random time between two heartbeats would see on average about
  half an interval less.
- Mistake rate lambda_M: while the process is up, how often the detector
  wrongly starts suspecting it (trust -> suspect transitions per unit time).
  Replaying heartbeat i leaves a deadline D_i; if heartbeat i+1 arrives
  after D_i, that is one mistake.  Reported per hour.
- Mistake duration T_M: how long such a wrong suspicion lasts, i.e. from
  D_i until heartbeat i+1 arrives and the detector trusts again; the mean.
- Query accuracy P_A: the probability that the detector's output is right
  when queried at a random time while the process is up:
  1 - (time spent wrongly suspecting) / (time observed).

Traces (bench/_traces.py) are recorded over loopback: a sender with a 10 ms
interval that drops heartbeats with a seeded RNG (loss), delays each by a
uniform random [0, jitter] (jitter), or stalls for 200 ms every ~5 s
(uniform 2.5..7.5 s apart: a GC or VM pause; the process is up, so a
suspicion during a stall is a mistake), and a receiver that records kernel
receive timestamps (SO_TIMESTAMPNS).  Sender and receiver run under
SCHED_FIFO 50 when permitted (--fifo; the engine's realtime_priority), so
other load on a shared machine does not dominate the traces: under normal
scheduling on a busy 2-vCPU VM they carried 30-90 ms sender stalls, hitting
every segment at once, a few per 4 minutes.  What remains (timer latency,
VM steal) is part of the trace.  Scenarios: loss 0/1/5/20 % x jitter
0/2/5 ms, and the pause scenario.  The key scenario (5 % loss, 2 ms jitter)
is recorded as several segments in parallel so that together they cover
about an hour of heartbeats (parallel segments share the machine's
hiccups, so for those they are not independent hours); every other scenario
is one segment.  The first 5 s of every segment is warm-up (the phi window
fills) and not measured.

Detectors swept (interval I = 10 ms):
- fixed: deadtime 1.5..10 I, and 15..25 I to reach past the 200 ms pauses;
- phi: phi_threshold 1..16, default phi_min_std (I/4), window 256, min
  samples 16, no acceptable pause;
- phi8+pause: phi_threshold 8 with phi_acceptable_pause 1..25 I.

Output: a markdown table per scenario, bench/results/detector_quality.json,
and bench/results/detector_quality.png (T_D against mistake rate, one panel
per scenario) when matplotlib is installed (an optional dependency: without
it the plot is skipped).  Traces are written to bench/results/traces/ and
can be replayed with --traces DIR, so the figures can be remade.

    python bench/detector_quality.py                 # record 4 min, replay 1-2 min
    python bench/detector_quality.py --traces bench/results/traces

Last line (key scenario l5_j2): for each family, the smallest mean T_D among
its swept settings whose measured mistake rate is at most one per hour
(none: no setting got there), and the hours of trace measured:
fixed_td_ms_at_1ph=<ms> phi_td_ms_at_1ph=<ms|none>
phipause_td_ms_at_1ph=<ms|none> key_trace_h=<h>
"""
from __future__ import annotations

import argparse
import bisect
import glob
import json
import multiprocessing
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _common import machine_info, write_json  # noqa: E402

CDEF = """
typedef struct hb_timing {
    uint32_t interval_us;
    uint32_t warntime_us;
    uint32_t deadtime_us;
    uint32_t initdead_us;
    int detector;
    double phi_threshold;
    uint32_t phi_min_std_us;
    uint32_t phi_acceptable_pause_us;
    uint32_t phi_window;
    uint32_t phi_min_samples;
} hb_timing;

typedef struct hb_detector {
    hb_timing t;
    double phi_z;
    uint64_t last_ns;
    uint32_t n;
    uint32_t head;
    double sum, sumsq;
    uint32_t samples[1024];
} hb_detector;

void hb_timing_defaults(hb_timing *t, uint32_t interval_us);
int hb_timing_validate(const hb_timing *t);
int hb_detector_init(hb_detector *d, const hb_timing *t);
void hb_detector_heartbeat(hb_detector *d, uint64_t now_ns);
uint64_t hb_detector_down_at(const hb_detector *d);
"""

FIXED, PHI = 0, 1
WARMUP_NS = 5_000_000_000
# Replayed times are shifted so that no arrival is at 0 ("never heard").
T_BASE_NS = 1_000_000_000
KEY = "l5_j2"

FIXED_MULT = [1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 15, 20, 25]
PHI_THRESHOLDS = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16]
PAUSE_MULT = [1, 2, 3, 5, 10, 15, 20, 25]


def scenarios(duration_s: float, key_segments: int) -> list[dict]:
    out = []
    for loss in (0, 1, 5, 20):
        for jit in (0, 2, 5):
            name = f"l{loss}_j{jit}"
            out.append({"name": name, "loss": loss / 100, "jitter_ms": jit,
                        "pause_ms": 0, "pause_every_s": 0,
                        "segments": key_segments if name == KEY else 1,
                        "duration_s": duration_s})
    out.append({"name": "pause", "loss": 0.0, "jitter_ms": 0, "pause_ms": 200,
                "pause_every_s": 5.0, "segments": 1, "duration_s": duration_s})
    return out


def describe(sc: dict) -> str:
    if sc["pause_ms"]:
        return (f"{sc['pause_ms']:g} ms stall every ~{sc['pause_every_s']:g} s, "
                "no loss, no jitter")
    return (f"loss {sc['loss'] * 100:g} %, jitter uniform [0, {sc['jitter_ms']:g}] ms")


# ------------------------------------------------------------ recording

def _steal_ticks() -> int | None:
    """Time the hypervisor took from this VM's cpus (USER_HZ ticks)."""
    try:
        with open("/proc/stat") as f:
            return int(f.readline().split()[8])
    except (OSError, IndexError, ValueError):
        return None


def record(out_dir: str, interval_ms: float, duration_s: float,
           key_segments: int, seed: int, fifo: int) -> None:
    import _traces
    scs = scenarios(duration_s, key_segments)
    jobs = []
    for si, sc in enumerate(scs):
        for seg in range(sc["segments"]):
            jobs.append((sc["name"], dict(interval_ms=interval_ms, duration_s=duration_s,
                                          loss=sc["loss"], jitter_ms=sc["jitter_ms"],
                                          pause_ms=sc["pause_ms"],
                                          pause_every_s=sc["pause_every_s"],
                                          fifo_priority=fifo,
                                          seed=seed * 100_003 + si * 1000 + seg)))
    print(f"recording {len(jobs)} segments of {duration_s:g} s in parallel "
          f"({len(scs)} scenarios, interval {interval_ms:g} ms) ...", flush=True)
    t0 = time.monotonic()
    load0 = os.getloadavg()
    steal0 = _steal_ticks()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(len(jobs)) as pool:
        res = pool.map(_traces.record_segment, [j[1] for j in jobs], chunksize=1)
    load1 = os.getloadavg()
    steal1 = _steal_ticks()
    rec_s = time.monotonic() - t0
    os.makedirs(out_dir, exist_ok=True)
    info = machine_info()
    info["loadavg_before"] = load0
    info["loadavg_after"] = load1
    info["parallel_segments"] = len(jobs)
    info["scheduling"] = res[0]["stats"]["scheduling"]
    if steal0 is not None and steal1 is not None:
        info["vm_steal_ms"] = (steal1 - steal0) * 1000 / os.sysconf("SC_CLK_TCK")
    print(f"recorded in {rec_s:.0f} s ({info['scheduling']}, load "
          f"{load0[0]:.1f} -> {load1[0]:.1f}, vm steal "
          f"{info.get('vm_steal_ms', float('nan')):.0f} ms)", flush=True)
    for sc in scs:
        segs = [{"seed": j[1]["seed"], **r} for j, r in zip(jobs, res) if j[0] == sc["name"]]
        doc = {"format": "heart-heartbeat-trace/1", "scenario": sc["name"],
               "description": describe(sc), "interval_ms": interval_ms,
               "loss": sc["loss"], "jitter_ms": sc["jitter_ms"],
               "jitter_distribution": "uniform [0, jitter_ms], imposed at the sender",
               "pause_ms": sc["pause_ms"], "pause_every_s": sc["pause_every_s"],
               "duration_s": duration_s,
               "clock": "CLOCK_REALTIME; gen_ns: sender generation time, "
                        "gen_ns + delay_ns: kernel receive time (SO_TIMESTAMPNS); "
                        "ns from the first heartbeat of the segment; delay null = lost",
               "machine": info, "segments": segs}
        with open(os.path.join(out_dir, f"{sc['name']}.json"), "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")


# ------------------------------------------------------------ replay

_lib = _ffi = None


def _load_lib():
    global _lib, _ffi
    if _lib is None:
        import cffi
        path = os.environ.get("HEART_LIBHEART") or os.path.join(
            ROOT, "build", "cmake", "libheart.so")
        if not os.path.exists(path):
            raise SystemExit(f"libheart not found at {path}: run `make cmake-lib` "
                             "or set HEART_LIBHEART")
        _ffi = cffi.FFI()
        _ffi.cdef(CDEF)
        _lib = _ffi.dlopen(path)
        # The struct layout must match the library's (catches a stale cdef).
        assert _ffi.sizeof("hb_detector") == 48 + 8 + 8 + 4 + 4 + 16 + 4096, \
            _ffi.sizeof("hb_detector")
    return _lib, _ffi


def configs(interval_us: int) -> list[dict]:
    out = []
    for m in FIXED_MULT:
        out.append({"family": "fixed", "param": f"deadtime {m:g} I",
                    "detector": FIXED, "deadtime_us": int(m * interval_us)})
    for th in PHI_THRESHOLDS:
        out.append({"family": "phi", "param": f"threshold {th:g}",
                    "detector": PHI, "phi_threshold": float(th)})
    for m in PAUSE_MULT:
        out.append({"family": "phi8+pause", "param": f"pause {m:g} I",
                    "detector": PHI, "phi_threshold": 8.0,
                    "pause_us": int(m * interval_us)})
    return out


def _timing(ffi, lib, interval_us: int, cfg: dict):
    t = ffi.new("hb_timing *")
    lib.hb_timing_defaults(t, interval_us)
    t.detector = cfg["detector"]
    if cfg["detector"] == FIXED:
        t.deadtime_us = cfg["deadtime_us"]
        t.warntime_us = min(t.warntime_us, t.deadtime_us - 1)
        t.initdead_us = max(t.initdead_us, t.deadtime_us)
    else:
        t.phi_threshold = cfg["phi_threshold"]
        t.phi_acceptable_pause_us = cfg.get("pause_us", 0)
    rc = lib.hb_timing_validate(t)
    if rc != 0:
        raise ValueError(f"invalid timing for {cfg}: {rc}")
    return t


def _prepare(seg: dict) -> dict:
    """Arrival times (sorted, shifted) and, for every crash point, the index
    of the last arrival the detector sees after that crash."""
    gen = seg["gen_ns"]
    arr = []
    for k, (g, d) in enumerate(zip(gen, seg["delay_ns"])):
        if d is not None:
            arr.append((g + d + T_BASE_NS, k))
    arr.sort()
    idx_of_seq = {k: i for i, (_, k) in enumerate(arr)}
    reordered = sum(1 for i in range(1, len(arr)) if arr[i][1] < arr[i - 1][1])
    crash = []  # (crash time, arrival index)
    last = -1
    for k, g in enumerate(gen):
        i = idx_of_seq.get(k)
        if i is not None and i > last:
            last = i
        if g >= WARMUP_NS and last >= 0:
            crash.append((g + T_BASE_NS, last))
    times = [a for a, _ in arr]
    first = bisect.bisect_left(times, WARMUP_NS + T_BASE_NS)
    return {"arr": times, "crash": crash, "first": first, "reordered": reordered}


def replay(job) -> dict:
    """Run one config over all segments of one scenario."""
    lib, ffi = _load_lib()
    segs, interval_us, cfg = job
    t = _timing(ffi, lib, interval_us, cfg)
    d = ffi.new("hb_detector *")
    hb, down_at = lib.hb_detector_heartbeat, lib.hb_detector_down_at
    mistakes, wrong_ns, observed_ns = 0, 0, 0
    tds = []
    for seg in segs:
        assert lib.hb_detector_init(d, t) == 0
        arr = seg["arr"]
        deadline = [0] * len(arr)
        for i, a in enumerate(arr):
            hb(d, a)
            deadline[i] = down_at(d)
        first = seg["first"]
        for i in range(first, len(arr) - 1):
            nxt = arr[i + 1]
            if nxt > deadline[i]:
                mistakes += 1
                wrong_ns += nxt - deadline[i]
        if len(arr) - 1 > first:
            observed_ns += arr[-1] - arr[first]
        for c, j in seg["crash"]:
            tds.append(max(0, deadline[j] - c))
    tds.sort()
    hours = observed_ns / 3.6e12
    res = dict(cfg)
    res.update({
        "td_ms": sum(tds) / len(tds) / 1e6 if tds else None,
        "td_p99_ms": tds[min(len(tds) - 1, int(0.99 * len(tds)))] / 1e6 if tds else None,
        "crash_points": len(tds),
        "mistakes": mistakes,
        "observed_h": hours,
        "mistakes_per_h": mistakes / hours if hours else None,
        "tm_ms": wrong_ns / mistakes / 1e6 if mistakes else None,
        "pa": 1 - wrong_ns / observed_ns if observed_ns else None,
    })
    return res


def load_traces(tdir: str) -> list[dict]:
    docs = []
    for path in sorted(glob.glob(os.path.join(tdir, "*.json"))):
        with open(path) as f:
            doc = json.load(f)
        if doc.get("format") == "heart-heartbeat-trace/1":
            docs.append(doc)
    order = {sc["name"]: i for i, sc in enumerate(scenarios(0, 1))}
    docs.sort(key=lambda d: order.get(d["scenario"], 99))
    return docs


def trace_stats(doc: dict, prepared: list[dict]) -> dict:
    gen = sum(len(s["gen_ns"]) for s in doc["segments"])
    arrived = sum(len(p["arr"]) for p in prepared)
    gaps = []
    for p in prepared:
        a = p["arr"]
        gaps.extend(a[i + 1] - a[i] for i in range(p["first"], len(a) - 1))
    # Sender wake-ups more than 3 intervals late that no scheduled stall
    # explains: the machine's own hiccups (a busy or preempted VM).
    stalls = 0
    if not doc.get("pause_ms"):
        lim = 3 * doc["interval_ms"] * 1e6
        for s in doc["segments"]:
            g = s["gen_ns"]
            stalls += sum(1 for k in range(len(g) - 1)
                          if g[k] >= WARMUP_NS and g[k + 1] - g[k] > lim)
    gaps.sort()
    n = len(gaps)
    mean = sum(gaps) / n
    std = (sum((g - mean) ** 2 for g in gaps) / n) ** 0.5
    return {"segments": len(doc["segments"]), "heartbeats": gen, "arrived": arrived,
            "loss_measured": 1 - arrived / gen if gen else None,
            "reordered": sum(p["reordered"] for p in prepared),
            "sender_stalls_over_3I": stalls,
            "gap_mean_ms": mean / 1e6, "gap_std_ms": std / 1e6,
            "gap_max_ms": gaps[-1] / 1e6, "gap_p99_ms": gaps[int(0.99 * (n - 1))] / 1e6}


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(name: str, desc: str, st: dict, rows: list[dict]) -> str:
    out = [f"### {name}: {desc}", "",
           f"{st['segments']} segment(s), {st['heartbeats']} heartbeats, "
           f"measured loss {st['loss_measured'] * 100:.2f} %, inter-arrival "
           f"mean {st['gap_mean_ms']:.2f} ms, std {st['gap_std_ms']:.2f} ms, "
           f"p99 {st['gap_p99_ms']:.2f} ms, max {st['gap_max_ms']:.1f} ms; "
           f"unscheduled sender stalls > 3 I: {st['sender_stalls_over_3I']}; "
           f"observed {rows[0]['observed_h'] * 60:.1f} min", "",
           "| detector | parameter | T_D ms | T_D p99 ms | mistakes | λ_M per hour | T_M ms | P_A |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['family']} | {r['param']} | {_fmt(r['td_ms'], '.1f')} | "
                   f"{_fmt(r['td_p99_ms'], '.1f')} | {r['mistakes']} | "
                   f"{_fmt(r['mistakes_per_h'], '.1f')} | {_fmt(r['tm_ms'], '.1f')} | "
                   f"{_fmt(r['pa'], '.6f')} |")
    return "\n".join(out)


def td_at_rate(rows: list[dict], family: str, per_h: float):
    ok = [r["td_ms"] for r in rows if r["family"] == family
          and r["mistakes_per_h"] is not None and r["mistakes_per_h"] <= per_h]
    return min(ok) if ok else None


def plot(path: str, results: list[dict]) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.ticker
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install matplotlib)")
        return False
    n = len(results)
    cols = 4
    rows_n = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.4 * rows_n),
                             squeeze=False)
    styles = {"fixed": ("tab:blue", "o"), "phi": ("tab:red", "s"),
              "phi8+pause": ("tab:green", "^")}
    for ax, sc in zip(axes.flat, results):
        hours = sc["rows"][0]["observed_h"]
        floor = 0.5 / hours  # where "no mistake in the trace" is drawn
        for fam, (color, marker) in styles.items():
            pts = sorted((r["td_ms"], r["mistakes_per_h"]) for r in sc["rows"]
                         if r["family"] == fam and r["td_ms"] is not None)
            xs = [p[0] for p in pts]
            ys = [p[1] if p[1] > 0 else floor for p in pts]
            ax.plot(xs, ys, color=color, marker=marker, ms=4, lw=1.2, label=fam)
            zx = [p[0] for p in pts if p[1] == 0]
            if zx:
                ax.plot(zx, [floor] * len(zx), ls="none", marker="v", ms=7,
                        mfc="white", mec=color)
        ax.axhline(1.0, color="grey", lw=0.6, ls=":")
        ax.axhline(floor, color="grey", lw=0.4, ls="--")
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xticks([10, 20, 50, 100, 200, 300])
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(f"{sc['scenario']}: {sc['description']}", fontsize=8)
        ax.set_xlabel("mean detection time T_D (ms)", fontsize=8)
        ax.set_ylabel("mistakes per hour", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Heart failure detectors: detection time vs mistake rate "
                 "(open triangles: no mistake in the trace; dotted: 1/h)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", help="replay the saved traces in this directory "
                    "(default: record new ones into bench/results/traces)")
    ap.add_argument("--out-traces", default=os.path.join(HERE, "results", "traces"))
    ap.add_argument("--interval-ms", type=float, default=10.0)
    ap.add_argument("--duration", type=float, default=240.0,
                    help="seconds per recorded segment")
    ap.add_argument("--key-segments", type=int, default=16,
                    help=f"parallel segments recorded for the key scenario {KEY}")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fifo", type=int, default=50,
                    help="record under SCHED_FIFO with this priority when "
                         "permitted (0: normal scheduling)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "detector_quality.json"))
    ap.add_argument("--png", default=os.path.join(HERE, "results", "detector_quality.png"))
    a = ap.parse_args()
    t_start = time.monotonic()

    tdir = a.traces
    if not tdir:
        tdir = a.out_traces
        record(tdir, a.interval_ms, a.duration, a.key_segments, a.seed, a.fifo)
    docs = load_traces(tdir)
    if not docs:
        raise SystemExit(f"no traces in {tdir}")
    _load_lib()

    t_replay = time.monotonic()
    prepared = {doc["scenario"]: [_prepare(s) for s in doc["segments"]] for doc in docs}
    jobs = []
    for doc in docs:
        interval_us = int(round(doc["interval_ms"] * 1000))
        for cfg in configs(interval_us):
            jobs.append((doc["scenario"], (prepared[doc["scenario"]], interval_us, cfg)))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(max(1, a.jobs)) as pool:
        out = pool.map(replay, [j[1] for j in jobs], chunksize=1)
    replay_s = time.monotonic() - t_replay

    results = []
    md = []
    for doc in docs:
        name = doc["scenario"]
        rows = [r for (sname, _), r in zip(jobs, out) if sname == name]
        st = trace_stats(doc, prepared[name])
        results.append({"scenario": name, "description": doc["description"],
                        "interval_ms": doc["interval_ms"], "trace": st,
                        "recorded": doc.get("machine"), "rows": rows})
        md.append(table(name, doc["description"], st, rows))
    print()
    print("\n\n".join(md))
    print()

    key = next((r for r in results if r["scenario"] == KEY), None)
    summary = {}
    if key:
        for fam, label in (("fixed", "fixed"), ("phi", "phi"), ("phi8+pause", "phipause")):
            summary[f"{label}_td_ms_at_1ph"] = td_at_rate(key["rows"], fam, 1.0)
        summary["key_trace_h"] = key["rows"][0]["observed_h"]
        if summary["key_trace_h"] < 1.0:
            print(f"note: the {KEY} trace covers less than an hour, too short to "
                  "resolve one mistake per hour (use --key-segments 16)")
    have_plot = plot(a.png, results) if a.png else False
    write_json(a.json, {"bench": "detector_quality", "machine": machine_info(),
                        "traces": os.path.abspath(tdir), "key_scenario": KEY,
                        "warmup_s": WARMUP_NS / 1e9, "replay_s": replay_s,
                        "plot": a.png if have_plot else None,
                        "summary": summary, "scenarios": results})
    print(f"replay {replay_s:.0f} s, total {time.monotonic() - t_start:.0f} s; "
          f"json: {a.json}")
    print(" ".join(f"{k}={'none' if v is None else format(v, '.1f') if k != 'key_trace_h' else format(v, '.2f')}"
                   for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
