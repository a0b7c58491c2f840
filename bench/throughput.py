#!/usr/bin/env python3
"""Receive throughput: verified heartbeats per second, C engine vs Python.

A flooder process sends precomputed, authenticated heartbeats (72 bytes: a
16-byte payload) as fast as it can to one receiver on 127.0.0.1, with
sendmmsg(2) called through cffi in ABI mode.  Two receivers take the same
packets in turn, in the same run:

  c       heart._core.Engine: the C engine thread (recvmmsg, parse, cluster,
          peer, replay window, tag, detector); rate = growth of
          Engine.counters()["accepted"] over the window / its length;
  python  an asyncio DatagramProtocol running the same checks in Python
          (bench/_pyreceiver.py: struct, replay bitmap, hmac/hashlib).

The receiver (main process and, for the C run, the engine thread) is pinned
to one core and the flooder to another when os.sched_setaffinity allows.
Loopback delivery (the kernel's receive path up to the socket queue) runs on
the flooder's core, so the receiver's core does the reads and the checks.

Only 127.0.0.1 is ever used.  See docs/benchmarks.md.

    python3 bench/throughput.py [--seconds 2] [--repeat 3] [--alg hmac-sha256]
                                [--json PATH]

The last line printed is  c_per_s=<int> python_per_s=<int> ratio=<float>
"""
import argparse
import asyncio
import multiprocessing
import os
import socket
import sys
import threading
import time
from array import array

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
try:
    import heart._core as core
except ImportError:  # run from a checkout without PYTHONPATH
    sys.path.insert(0, ROOT)
    import heart._core as core
sys.path.insert(0, HERE)
from _common import machine_info, write_json
from _pyreceiver import PyReceiver, ReceiverProtocol, gcm_available

LOOPBACK = "127.0.0.1"  # the only address this benchmark ever uses
CLUSTER = 0x48454152
RECEIVER_NODE = 1
SENDERS = (101, 102, 103, 104)
GENERATION = 7
KEY_ID = 1
KEY = bytes(range(1, 33))
PAYLOAD = b"heart-bench-16b!"  # 16 bytes: packets are 40 + 16 + 16 = 72 bytes
PACKET_LEN = 40 + len(PAYLOAD) + 16
RCVBUF = 4 << 20  # what the engine asks for on its sockets (link.c)
SAMPLE_S = 0.05
SOL_UDP = 17       # <netinet/udp.h>
UDP_SEGMENT = 103  # <linux/udp.h>: UDP GSO segment size

CDEF = """
struct iovec {
    void *iov_base;
    size_t iov_len;
};
struct msghdr {
    void *msg_name;
    unsigned int msg_namelen;     /* socklen_t */
    struct iovec *msg_iov;
    size_t msg_iovlen;            /* size_t in glibc */
    void *msg_control;
    size_t msg_controllen;        /* size_t in glibc */
    int msg_flags;
};
struct mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
"""


# ---------------------------------------------------------------- packets

def make_packets(count, alg):
    """count unique sealed heartbeats, round-robin over SENDERS, each
    sender's sequence growing by one: every packet is accepted once."""
    kr = core.Keyring()
    kr.add(KEY_ID, KEY, alg)
    kr.set_send(KEY_ID)
    seal = core.seal
    buf = bytearray(count * PACKET_LEN)
    n_senders = len(SENDERS)
    for i in range(count):
        buf[i * PACKET_LEN:(i + 1) * PACKET_LEN] = seal(
            kr, cluster_id=CLUSTER, node_id=SENDERS[i % n_senders],
            generation=GENERATION, seq=i // n_senders + 1,
            interval_us=1_000_000, payload=PAYLOAD)
    return buf


# ---------------------------------------------------------------- flooder

class Flood:
    """Shared state between the parent and one flooder process."""

    def __init__(self, ctx):
        self.ready = ctx.Event()
        self.go = ctx.Event()
        self.sent = ctx.RawValue("Q", 0)      # packets handed to the kernel
        self.errors = ctx.RawValue("Q", 0)    # failed sendmmsg calls
        self.errno = ctx.RawValue("i", 0)     # errno of the last failure
        self.stop = ctx.RawValue("i", 0)      # parent asks to stop
        self.done_ns = ctx.RawValue("Q", 0)   # CLOCK_MONOTONIC when it ended
        self.start_ns = ctx.RawValue("Q", 0)


def _flooder(flood, packets, port, batch, gso, cpu):
    """Child process: send every packet once, in batches, as fast as it can.

    Each sendmmsg(2) call hands the kernel `batch` packets.  With gso > 0,
    one message carries gso consecutive packets as one UDP GSO buffer
    (UDP_SEGMENT = 72): the kernel cuts it into gso separate datagrams on
    the way, so the receiver sees exactly the same datagrams, and the
    flooder pays the send path once per gso packets."""
    import cffi

    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    libc = ffi.dlopen(None)
    if ffi.sizeof("void *") != 8:
        raise SystemExit("the flooder fills iovec/mmsghdr as 64-bit words: "
                         "64-bit Linux only")
    per_msg = gso if gso > 0 else 1
    msg_len = per_msg * PACKET_LEN
    n = len(packets) // msg_len  # messages
    keep = ffi.from_buffer(packets)  # keeps packets alive and pinned
    base = int(ffi.cast("uintptr_t", keep))

    # One iovec and one mmsghdr per message, filled with strided slices of
    # 64-bit words (offsets from cffi's own layout of the structs).
    iov = ffi.new("struct iovec[]", n)
    msgs = ffi.new("struct mmsghdr[]", n)  # zeroed: msg_name NULL (connected)
    w = ffi.sizeof("void *")
    words = memoryview(ffi.buffer(iov)).cast("B").cast("Q")
    stride = ffi.sizeof("struct iovec") // w
    words[ffi.offsetof("struct iovec", "iov_base") // w::stride] = \
        array("Q", range(base, base + n * msg_len, msg_len))
    words[ffi.offsetof("struct iovec", "iov_len") // w::stride] = \
        array("Q", [msg_len]) * n
    iov_addr = int(ffi.cast("uintptr_t", iov))
    words = memoryview(ffi.buffer(msgs)).cast("B").cast("Q")
    stride = ffi.sizeof("struct mmsghdr") // w
    hdr = ffi.offsetof("struct mmsghdr", "msg_hdr")
    iov_size = ffi.sizeof("struct iovec")
    words[(hdr + ffi.offsetof("struct msghdr", "msg_iov")) // w::stride] = \
        array("Q", range(iov_addr, iov_addr + n * iov_size, iov_size))
    words[(hdr + ffi.offsetof("struct msghdr", "msg_iovlen")) // w::stride] = \
        array("Q", [1]) * n
    del words

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    if gso > 0:
        sock.setsockopt(SOL_UDP, UDP_SEGMENT, PACKET_LEN)
    sock.connect((LOOPBACK, port))
    fd = sock.fileno()
    sendmmsg = libc.sendmmsg
    stop = flood.stop
    sent = flood.sent
    per_call = max(1, batch // per_msg)

    flood.ready.set()
    flood.go.wait()
    flood.start_ns.value = time.monotonic_ns()
    i = 0
    while i < n and not stop.value:
        k = min(per_call, n - i)
        r = sendmmsg(fd, msgs + i, k, 0)
        if r > 0:
            i += r
            sent.value = i * per_msg
        else:
            # ECONNREFUSED (an ICMP error from an earlier packet), ENOBUFS:
            # count it and go on; the packets are retried.
            flood.errors.value += 1
            flood.errno.value = ffi.errno
            if flood.errors.value > 100000:
                break
    flood.done_ns.value = time.monotonic_ns()
    sock.close()


def start_flooder(ctx, packets, port, args, cpu):
    flood = Flood(ctx)
    proc = ctx.Process(target=_flooder,
                       args=(flood, packets, port, args.batch, args.gso, cpu),
                       name="heart-bench-flooder", daemon=True)
    proc.start()
    if not flood.ready.wait(60):
        end_process(proc)
        raise RuntimeError("the flooder did not get ready")
    return flood, proc


def end_process(proc):
    """End the flooder we started, by its own handle (never by name)."""
    if proc is None:
        return
    proc.join(2)
    if proc.is_alive():
        proc.terminate()
        proc.join(2)
    if proc.is_alive():
        proc.kill()
        proc.join(2)


# ---------------------------------------------------------------- helpers

def udp_rcvbuf_errors():
    """UDP RcvbufErrors from /proc/net/snmp (datagrams dropped because a
    socket queue was full), or None."""
    try:
        with open("/proc/net/snmp") as f:
            lines = [ln.split() for ln in f if ln.startswith("Udp:")]
        names, values = lines[0], lines[1]
        return int(values[names.index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return None


def thread_sched(tid):
    """(ns on cpu, ns runnable but waiting for a cpu) of a thread of this
    process, from /proc/self/task/TID/schedstat, or None."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            run, wait = f.read().split()[:2]
            return int(run), int(wait)
    except (OSError, ValueError):
        return None


def engine_tid():
    """Thread id of the engine thread ("heart-engine"), or None."""
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() == "heart-engine":
                    return int(tid)
    except OSError:
        pass
    return None


def pick_cpus():
    """(receiver cpu, flooder cpu) or (None, None) when pinning is not
    possible (fewer than 2 allowed cpus, or no sched_setaffinity)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


def window_rate(samples, start_t, warmup, seconds, done_t):
    """Rates over [start + warmup, min(start + warmup + seconds, flood
    end)], from (t, accepted, sent, drops, receiver cpu ns) samples."""
    lo = start_t + warmup
    hi = lo + seconds
    if done_t is not None:
        hi = min(hi, done_t)
    inside = [s for s in samples if lo <= s[0] <= hi]
    if len(inside) < 2:
        # very short flood: take everything we have
        inside = [s for s in samples if done_t is None or s[0] <= done_t] or samples
        if len(inside) < 2:
            inside = samples
    a, b = inside[0], inside[-1]
    dt = b[0] - a[0]
    if dt <= 0:
        return {"window_s": 0.0, "accepted_per_s": 0, "sent_per_s": 0,
                "kernel_drops_per_s": None, "receiver_busy": None,
                "receiver_waited": None,
                "accepted_per_cpu_s": None, "flood_exhausted": True}
    drops = None
    if a[3] is not None and b[3] is not None:
        drops = (b[3] - a[3]) / dt
    busy = per_cpu_s = waited = None
    if a[4] is not None and b[4] is not None and b[4][0] > a[4][0]:
        cpu_s = (b[4][0] - a[4][0]) / 1e9
        busy = cpu_s / dt
        waited = (b[4][1] - a[4][1]) / 1e9 / dt
        per_cpu_s = (b[1] - a[1]) / cpu_s
    return {"window_s": dt, "accepted_per_s": (b[1] - a[1]) / dt,
            "sent_per_s": (b[2] - a[2]) / dt, "kernel_drops_per_s": drops,
            "receiver_busy": busy, "receiver_waited": waited,
            "accepted_per_cpu_s": per_cpu_s,
            "flood_exhausted": done_t is not None and done_t < lo + seconds}


def _flood_done_t(flood):
    """The flood's end on time.monotonic()'s clock, or None if running."""
    if not flood.done_ns.value:
        return None
    return flood.done_ns.value / 1e9


# ---------------------------------------------------------------- receivers

def run_c(packets, args, cpus):
    eng = core.Engine(cluster_id=CLUSTER, node_id=RECEIVER_NODE,
                      generation=1, interval_us=1_000_000,
                      deadtime_us=60_000_000)
    proc = None
    flood = None
    try:
        eng.add_key(KEY_ID, KEY, args.alg)
        eng.set_send_key(KEY_ID)
        link = eng.add_link("unicast", bind=LOOPBACK, port=0)
        port = eng.link_port(link)
        for node in SENDERS:
            eng.add_peer(node)  # no peer address: the engine sends nothing
        ctx = multiprocessing.get_context("fork")
        flood, proc = start_flooder(ctx, packets, port, args, cpus[1])
        eng.start()
        c0 = eng.counters()
        tid = None
        for _ in range(100):
            tid = engine_tid()
            if tid is not None:
                break
            time.sleep(0.01)
        samples = []
        flood.go.set()
        t_start = time.monotonic()
        end = t_start + args.warmup + args.seconds
        while True:
            now = time.monotonic()
            c = eng.counters()
            samples.append((now, c["accepted"], flood.sent.value,
                            udp_rcvbuf_errors(), thread_sched(tid)))
            eng.drain(4096)  # keep the event queue short
            if now >= end or flood.done_ns.value:
                break
            time.sleep(SAMPLE_S)
        done_t = _flood_done_t(flood)
        flood.stop.value = 1
        end_process(proc)
        proc = None
        c1 = eng.counters()
        res = window_rate(samples, t_start, args.warmup, args.seconds, done_t)
        res["accepted_total"] = c1["accepted"] - c0["accepted"]
        res["received_total"] = c1["received"] - c0["received"]
        res["rejected"] = {k: v for k, v in c1["rejected"].items() if v}
        res["flood_sent_total"] = flood.sent.value
        res["flood_errors"] = flood.errors.value
        res["loop_iterations"] = c1["loop_iterations"] - c0["loop_iterations"]
        res["peers_up"] = sum(1 for p in eng.peers() if p["state"] == "up")
        return res
    finally:
        if flood is not None:
            flood.stop.value = 1
        end_process(proc)
        eng.close(leave=False)


def run_python(packets, args, cpus):
    rx = PyReceiver(CLUSTER, RECEIVER_NODE, SENDERS, {KEY_ID: (args.alg, KEY)})
    proto = ReceiverProtocol(rx)
    loop = asyncio.new_event_loop()
    proc = None
    flood = None
    transport = None
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
        transport, _ = loop.run_until_complete(
            loop.create_datagram_endpoint(lambda: proto, sock=sock))
        ctx = multiprocessing.get_context("fork")
        flood, proc = start_flooder(ctx, packets, port, args, cpus[1])

        samples = []
        tid = threading.get_native_id()

        async def sampler():
            flood.go.set()
            t_start = time.monotonic()
            end = t_start + args.warmup + args.seconds
            while True:
                now = time.monotonic()
                samples.append((now, rx.accepted, flood.sent.value,
                                udp_rcvbuf_errors(), thread_sched(tid)))
                if now >= end or flood.done_ns.value:
                    return t_start
                await asyncio.sleep(SAMPLE_S)

        t_start = loop.run_until_complete(sampler())
        done_t = _flood_done_t(flood)
        flood.stop.value = 1
        end_process(proc)
        proc = None
        res = window_rate(samples, t_start, args.warmup, args.seconds, done_t)
        res["accepted_total"] = rx.accepted
        res["received_total"] = rx.received
        res["rejected"] = {name: rx.rejected[code]
                           for code, name in enumerate(
                               ["", "malformed", "wrong_cluster", "unknown_node",
                                "unknown_key", "bad_tag", "replay"])
                           if code and rx.rejected[code]}
        res["flood_sent_total"] = flood.sent.value
        res["flood_errors"] = flood.errors.value
        return res
    finally:
        if flood is not None:
            flood.stop.value = 1
        end_process(proc)
        if transport is not None:
            transport.close()
        loop.close()


# ---------------------------------------------------------------- main

def self_check(packets, alg):
    """The Python receiver and the C codec agree on the first packets."""
    rx = PyReceiver(CLUSTER, RECEIVER_NODE, SENDERS, {KEY_ID: (alg, KEY)})
    kr = core.Keyring()
    kr.add(KEY_ID, KEY, alg)
    for i in range(8):
        pkt = packets[i * PACKET_LEN:(i + 1) * PACKET_LEN]
        assert core.verify(kr, CLUSTER, pkt) == 0
        assert rx.handle(pkt) == 0, "python receiver rejects a good packet"
        assert rx.handle(pkt) == -6, "python receiver accepts a replay"
    bad = bytearray(packets[8 * PACKET_LEN:9 * PACKET_LEN])
    bad[50] ^= 1
    assert core.verify(kr, CLUSTER, bytes(bad)) == -5
    assert rx.handle(bytes(bad)) == -5, "python receiver accepts a bad tag"


def fmt(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if not n:
        return 0
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def row(name, r):
    notes = []
    if r["sent_per_s"] and r["accepted_per_s"] >= 0.95 * r["sent_per_s"]:
        notes.append("flood-limited (kept up with the flood)")
    if r.get("flood_exhausted"):
        notes.append("packets ran out early (--packets)")
    if r["rejected"]:
        notes.append("rejected " + ", ".join(f"{k}={v}" for k, v in
                                             r["rejected"].items()))
    def pct(x):
        return "-" if x is None else f"{100 * x:.0f}%"

    if r["receiver_waited"] is not None and r["receiver_waited"] > 0.1:
        notes.append("receiver shared its core with other work")
    return (f"| {name} | {fmt(r['accepted_per_s'])} | {fmt(r['sent_per_s'])} "
            f"| {fmt(r['kernel_drops_per_s'])} "
            f"| {pct(r['receiver_busy'])} | {pct(r['receiver_waited'])} "
            f"| {fmt(r['accepted_per_cpu_s'])} | {r['window_s']:.2f} "
            f"| {'; '.join(notes)} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="measurement window per receiver and run (default 2)")
    ap.add_argument("--warmup", type=float, default=0.3,
                    help="flood time before the window opens (default 0.3)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each receiver, interleaved; the summary "
                         "takes the best run of each (default 3)")
    ap.add_argument("--alg", choices=sorted(core.ALGORITHMS),
                    default="hmac-sha256")
    ap.add_argument("--packets", type=int, default=None,
                    help="unique packets to precompute (default: enough for "
                         "1.7 M/s, 5.5 M/s with --gso, over warmup + seconds, at "
                         "least 1 M); every "
                         "run replays the same packets to a fresh receiver")
    ap.add_argument("--batch", type=int, default=256,
                    help="packets per sendmmsg call (default 256)")
    ap.add_argument("--gso", type=int, default=0, metavar="N",
                    help="let each sendmmsg message carry N packets as one UDP "
                         "GSO buffer (UDP_SEGMENT), cut into N datagrams by "
                         "the kernel: a faster flood from the same core "
                         "(0 = off, the default; 1..64)")
    ap.add_argument("--json", default=os.path.join(HERE, "results",
                                                    "throughput.json"),
                    help="where to write the results ('' for nowhere)")
    ap.add_argument("--skip-python", action="store_true",
                    help="measure the C engine only")
    args = ap.parse_args(argv)
    if not 1 <= args.batch <= 1024:
        ap.error("--batch must be 1..1024")
    if not 0 <= args.gso <= 64:
        ap.error("--gso must be 0..64")
    if args.repeat < 1 or args.seconds <= 0:
        ap.error("--repeat and --seconds must be positive")
    if args.alg == "aes-256-gcm" and not gcm_available() and not args.skip_python:
        print("note: the Python receiver needs the 'cryptography' package for "
              "AES-256-GCM; measuring the C engine only", file=sys.stderr)
        args.skip_python = True
    if args.packets is None:
        rate = 5_500_000 if args.gso else 1_700_000  # floods seen here, and some
        args.packets = max(1_000_000, int(rate * (args.seconds + args.warmup)))
    args.packets -= args.packets % (len(SENDERS) * max(1, args.gso))
    if args.packets < 64 * len(SENDERS):
        ap.error("--packets is too small")

    cpus = pick_cpus()
    old_affinity = None
    if cpus[0] is not None:
        old_affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpus[0]})  # this thread, and the engine's

    c_runs, py_runs = [], []
    try:
        t = time.monotonic()
        print(f"sealing {args.packets:,} packets ({args.alg}, {PACKET_LEN} bytes, "
              f"{len(SENDERS)} senders)...", file=sys.stderr, flush=True)
        packets = make_packets(args.packets, args.alg)
        print(f"  {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
        self_check(packets, args.alg)
        for i in range(args.repeat):
            print(f"run {i + 1}/{args.repeat}: C engine...", file=sys.stderr,
                  flush=True)
            c_runs.append(run_c(packets, args, cpus))
            if not args.skip_python:
                print(f"run {i + 1}/{args.repeat}: Python asyncio receiver...",
                      file=sys.stderr, flush=True)
                py_runs.append(run_python(packets, args, cpus))
    finally:
        if old_affinity is not None:
            os.sched_setaffinity(0, old_affinity)

    c_best = max(c_runs, key=lambda r: r["accepted_per_s"])
    py_best = max(py_runs, key=lambda r: r["accepted_per_s"]) if py_runs else None
    c_rate = int(c_best["accepted_per_s"])
    py_rate = int(py_best["accepted_per_s"]) if py_best else 0
    ratio = c_rate / py_rate if py_rate else 0.0
    c_med = median([r["accepted_per_s"] for r in c_runs])
    py_med = median([r["accepted_per_s"] for r in py_runs]) if py_runs else 0

    info = machine_info()
    pin = (f"receiver on cpu {cpus[0]}, flooder on cpu {cpus[1]}"
           if cpus[0] is not None else "not pinned")
    pin += (f", flood: sendmmsg of {args.batch} packets" +
            (f" as UDP GSO buffers of {args.gso}" if args.gso else ""))
    print(f"\nHeart receive throughput: {args.alg}, {PACKET_LEN}-byte heartbeats "
          f"from {len(SENDERS)} senders, {info['cpus']} cpus ({info['cpu_model']}),"
          f" {pin}, {info['date']}\n")
    print("| run | verified/s | flood sent/s | kernel drops/s | receiver cpu "
          "| receiver waited | verified per cpu-s | window s | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for i, r in enumerate(c_runs):
        print(row(f"C engine #{i + 1}", r))
    for i, r in enumerate(py_runs):
        print(row(f"Python asyncio #{i + 1}", r))
    print()
    def best_cpu(runs):
        vals = [r["accepted_per_cpu_s"] for r in runs if r["accepted_per_cpu_s"]]
        return max(vals) if vals else None

    c_cpu, py_cpu = best_cpu(c_runs), best_cpu(py_runs)
    print("| summary | best verified/s | median verified/s "
          "| best verified per cpu-s |")
    print("|---|---:|---:|---:|")
    print(f"| C engine | {fmt(c_rate)} | {fmt(c_med)} | {fmt(c_cpu)} |")
    if py_runs:
        print(f"| Python asyncio | {fmt(py_rate)} | {fmt(py_med)} | {fmt(py_cpu)} |")
        cpu_ratio = f"{c_cpu / py_cpu:.1f}" if c_cpu and py_cpu else "-"
        print(f"| ratio C / Python | {ratio:.1f} | "
              f"{(c_med / py_med if py_med else 0):.1f} | {cpu_ratio} |")
    print()
    if c_best["sent_per_s"] and c_best["accepted_per_s"] >= 0.95 * c_best["sent_per_s"]:
        print("The best C run kept up with the flood: its figure is a lower "
              "bound set by the flooder, not the engine's limit.")
    print("verified/s: accepted packets per second of wall time. receiver cpu: "
          "share of one core the receiving thread got (the engine thread, or "
          "the asyncio thread); receiver waited: share of the window it was "
          "runnable but another task had its core. verified per cpu-s: accepted per second of that "
          "thread's own CPU time, which other tenants of the core do not "
          "change. Target: C >= 500,000/s on one core and C / Python >= 7.\n")

    out = {"bench": "throughput", "alg": args.alg, "packet_bytes": PACKET_LEN,
           "senders": len(SENDERS), "packets": args.packets, "batch": args.batch,
           "gso": args.gso,
           "seconds": args.seconds, "warmup": args.warmup, "repeat": args.repeat,
           "cpus_pinned": list(cpus) if cpus[0] is not None else None,
           "machine": info, "c_runs": c_runs, "python_runs": py_runs,
           "c_per_s": c_rate, "python_per_s": py_rate, "ratio": round(ratio, 2),
           "c_median_per_s": int(c_med), "python_median_per_s": int(py_med),
           "c_best_per_cpu_s": c_cpu, "python_best_per_cpu_s": py_cpu,
           "summary": "best run of each receiver"}
    write_json(args.json, out)
    print(f"c_per_s={c_rate} python_per_s={py_rate} ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
