#!/usr/bin/env python3
"""Send timing under load: how late does the engine send its heartbeats?

One heart._core.Engine sends a heartbeat every --interval-us (5 ms) for
--seconds (10) on a unicast link bound to 127.0.0.1, to one peer address on
loopback (a socket of this script that counts what arrives, so the sends
really go out), while stress-ng loads every core:

    stress-ng --cpu N --vm 1 --vm-bytes 256M --timeout ...   (N = cpu count)

The engine records, for every heartbeat, how long after its CLOCK_MONOTONIC
deadline it went out (Engine.send_lateness(), microseconds), and counts send
deadlines it skipped after a stall (missed_ticks) and its own late wake-ups
(stalls: later than warntime past the deadline).

    python3 bench/send_timing.py [--realtime] [--seconds 10] [--interval-us 5000]
                                 [--no-stress] [--json PATH]

--realtime runs the engine thread SCHED_FIFO (realtime_priority 50) with its
memory locked (lock_memory=True).  The last line printed is

    p50_us=<float> p99_us=<float> p999_us=<float> missed=<int>

See docs/benchmarks.md.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
try:
    import heart._core as core
except ImportError:  # run from a checkout without PYTHONPATH
    sys.path.insert(0, ROOT)
    import heart._core as core
sys.path.insert(0, HERE)
from _common import machine_info, write_json

LOOPBACK = "127.0.0.1"  # the only address this benchmark uses
CLUSTER = 0x53454E44
NODE = 1
PEER = 2
KEY = bytes(range(100, 132))


def percentile(sorted_xs, q):
    """q-th percentile (0..100) of sorted values, linear interpolation
    between closest ranks (numpy's default)."""
    if not sorted_xs:
        return 0.0
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def start_stress(seconds):
    """Start stress-ng on every core; returns the Popen (its own session, so
    that its workers can be ended with it by its process group id)."""
    n = os.cpu_count() or 1
    cmd = ["stress-ng", "--cpu", str(n), "--vm", "1", "--vm-bytes", "256M",
           "--timeout", f"{int(seconds) + 10}s", "--quiet"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    return proc, cmd


def stop_stress(proc):
    """End the stress-ng we started: SIGTERM to its PID (it stops its
    workers), then SIGKILL to its process group if anything is left."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    # its workers are in the process group whose id is its PID
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def steal_ms():
    """CPU time the hypervisor took from this VM (all cpus), ms, or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) * 1000 // os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def drain_sink(sock):
    n = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return n
        n += 1


def build_reference():
    """Compile bench/ref_timer.c (a bare clock_nanosleep loop) once."""
    src = os.path.join(HERE, "ref_timer.c")
    out_dir = os.path.join(HERE, "..", "build", "bench")
    exe = os.path.join(out_dir, "ref_timer")
    if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(src):
        return exe
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    os.makedirs(out_dir, exist_ok=True)
    r = subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        print(f"could not build the reference loop: {r.stderr.strip()}", file=sys.stderr)
        return None
    return exe


def run_reference(interval_us, seconds, priority):
    exe = build_reference()
    if exe is None:
        return None
    r = subprocess.run([exe, str(interval_us), str(seconds), str(priority)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        print(f"reference loop failed: {r.stderr.strip()}", file=sys.stderr)
        return None
    return json.loads(r.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--realtime", action="store_true",
                    help="SCHED_FIFO engine thread (priority --priority) and "
                         "lock_memory=True")
    ap.add_argument("--priority", type=int, default=50,
                    help="realtime priority with --realtime (default 50)")
    ap.add_argument("--spin-us", type=int, default=0,
                    help="engine spin_us: wake this early before each send "
                         "and spin to the deadline (default 0: off)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--interval-us", type=int, default=5000)
    ap.add_argument("--no-stress", action="store_true",
                    help="run without stress-ng (an idle machine)")
    ap.add_argument("--json", default=os.path.join(HERE, "results",
                                                    "send_timing.json"),
                    help="where to write the results ('' for nowhere)")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.interval_us <= 0:
        ap.error("--seconds and --interval-us must be positive")
    if not 1 <= args.priority <= 99:
        ap.error("--priority must be 1..99")

    stress = not args.no_stress
    if stress and shutil.which("stress-ng") is None:
        print("stress-ng is not installed. Install it with\n"
              "    apt-get install stress-ng\n"
              "(Debian/Ubuntu; dnf install stress-ng on Fedora), or run with "
              "--no-stress to measure an unloaded machine.", file=sys.stderr)
        return 2

    expected = int(args.seconds * 1e6 / args.interval_us)
    if expected > 16384:
        print(f"note: {expected} sends expected; the engine keeps the lateness "
              f"of the last 16384 only", file=sys.stderr)

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sink.bind((LOOPBACK, 0))
    sink.setblocking(False)
    sink_port = sink.getsockname()[1]

    eng = core.Engine(cluster_id=CLUSTER, node_id=NODE, generation=1,
                      interval_us=args.interval_us,
                      realtime_priority=args.priority if args.realtime else 0,
                      lock_memory=args.realtime, spin_us=args.spin_us)
    proc = None
    cmd = None
    events = []
    arrived = 0
    try:
        eng.add_key(1, KEY, "hmac-sha256")
        eng.set_send_key(1)
        link = eng.add_link("unicast", bind=LOOPBACK, port=0)
        eng.add_peer(PEER)
        eng.set_peer_addr(PEER, link, LOOPBACK, sink_port)

        if stress:
            proc, cmd = start_stress(args.seconds)
            time.sleep(1.0)  # let the workers start and the vm worker map
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace").strip()
                print(f"stress-ng exited at once ({proc.returncode}): {err}",
                      file=sys.stderr)
                return 1
            print(f"load: {' '.join(cmd)} (pid {proc.pid})", file=sys.stderr)

        # The platform's floor, same run, same load, same scheduling.
        reference = run_reference(args.interval_us, args.seconds,
                                  args.priority if args.realtime else 0)
        steal0 = steal_ms()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        eng.start()
        t0 = time.monotonic()
        end = t0 + args.seconds
        while True:
            now = time.monotonic()
            if now >= end:
                break
            time.sleep(min(0.1, end - now))
            events.extend(eng.drain())
            arrived += drain_sink(sink)
        eng.stop(leave=False)
        elapsed = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu_pct = 100.0 * ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) / elapsed
        steal1 = steal_ms()
        events.extend(eng.drain())
        arrived += drain_sink(sink)
        lateness = eng.send_lateness()
        counters = eng.counters()
    finally:
        stop_stress(proc)
        eng.close(leave=False)
        sink.close()

    warnings = [e for e in events if e.name == "warning"]
    rt_denied = any(e.reason_name == "realtime" for e in warnings)
    mlock_denied = any(e.reason_name == "mlock" for e in warnings)
    for e in warnings:
        print(f"engine warning ({e.reason_name}): {e.message}", file=sys.stderr)
    if args.realtime and rt_denied:
        print("realtime scheduling was NOT permitted: the engine ran at normal "
              "priority (needs CAP_SYS_NICE or RLIMIT_RTPRIO, and a cgroup "
              "that allows realtime runtime)")
    if args.realtime and mlock_denied:
        print("locking memory was NOT permitted (needs CAP_IPC_LOCK or a large "
              "RLIMIT_MEMLOCK)")

    xs = sorted(lateness)
    p50, p99, p999 = (percentile(xs, q) for q in (50, 99, 99.9))
    mean = sum(xs) / len(xs) if xs else 0.0
    worst = xs[-1] if xs else 0
    missed = counters["missed_ticks"]
    stalls = counters["stalls"]
    over = sum(1 for x in xs if x >= args.interval_us)
    first = lateness[0] if lateness else 0
    steal = steal1 - steal0 if steal0 is not None and steal1 is not None else None
    if args.realtime:
        sched = ("SCHED_FIFO " + str(args.priority) if not rt_denied
                 else "SCHED_OTHER (realtime denied)")
        sched += ", memory locked" if not mlock_denied else ", mlock denied"
    else:
        sched = "SCHED_OTHER"
    if args.spin_us:
        sched += f", spin {args.spin_us} us before each send"
    load = (f"stress-ng --cpu {os.cpu_count()} --vm 1 --vm-bytes 256M"
            if stress else "none")
    info = machine_info()

    print(f"\nHeart send timing: interval {args.interval_us} us for "
          f"{elapsed:.1f} s, engine thread {sched}, load: {load}\n"
          f"{info['cpus']} cpus ({info['cpu_model']}), kernel {info['kernel']}, "
          f"{info['date']}\n")
    print("| sends | count | p50 us | p99 us | p99.9 us | max us | mean us "
          "| >= 1 interval late | missed ticks |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| engine | {len(xs)} | {p50:.1f} | {p99:.1f} "
          f"| {p999:.1f} | {worst} | {mean:.1f} | {over} | {missed} |")
    if reference:
        print(f"| reference: bare clock_nanosleep loop, same load and scheduling "
              f"| {reference['sends']} | {reference['p50_us']:.1f} | "
              f"{reference['p99_us']:.1f} | {reference['p999_us']:.1f} | "
              f"{reference['max_us']:.0f} | - | - | {reference['missed']} |")
    print(f"\nfirst send {first} us late; stalls {stalls} (max "
          f"{counters['max_stall_us']} us); {counters['heartbeats_sent']} "
          f"heartbeats sent, {arrived} arrived at the peer socket, "
          f"{counters['send_errors']} send errors; this process used "
          f"{cpu_pct:.1f} % of one cpu; vm steal "
          f"{'-' if steal is None else steal} ms.")
    print(f"\nlateness: how long after its deadline each heartbeat went out. "
          f"missed ticks: deadlines skipped after a late wake-up (never sent "
          f"in a burst). stalls: wake-ups later than "
          f"warntime ({2 * args.interval_us} us) past the deadline. The "
          f"schedule starts when the engine thread is ready, so the first "
          f"send does not include thread start-up or mlockall. reference: the simplest periodic loop (no socket, no "
          f"lock, no libheart) run just before the engine for as long: the "
          f"platform's own wake-up latency, which no heartbeat loop can beat. "
          f"vm steal: time the hypervisor gave this VM's cpus to something "
          f"else.\n")
    if reference and reference["p99_us"] > 0:
        print(f"reference_p99_us={reference['p99_us']:.1f} "
              f"engine_over_reference_p99={p99 / reference['p99_us']:.2f}")

    out = {"bench": "send_timing", "interval_us": args.interval_us,
           "seconds": args.seconds, "elapsed_s": round(elapsed, 3),
           "realtime": args.realtime, "spin_us": args.spin_us,
           "process_cpu_pct": round(cpu_pct, 2),
           "realtime_priority": args.priority if args.realtime else 0,
           "realtime_denied": rt_denied, "mlock_denied": mlock_denied,
           "stress": cmd if stress else None, "machine": info,
           "sends": len(xs), "p50_us": p50, "p99_us": p99, "p999_us": p999,
           "max_us": worst, "mean_us": mean, "first_send_us": first,
           "vm_steal_ms": steal, "late_by_interval_or_more": over,
           "missed_ticks": missed, "stalls": stalls,
           "max_stall_us": counters["max_stall_us"],
           "heartbeats_sent": counters["heartbeats_sent"],
           "send_errors": counters["send_errors"], "arrived_at_peer": arrived,
           "warnings": [e.message for e in warnings],
           "reference": reference,
           "lateness_us": lateness}
    write_json(args.json, out)
    print(f"p50_us={p50:.1f} p99_us={p99:.1f} p999_us={p999:.1f} missed={missed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
