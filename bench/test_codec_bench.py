"""Micro-benchmarks of the wire codec (heart._core): seal, verify, decode.

Run the timings:

    python -m pytest bench/test_codec_bench.py --benchmark-only

Each benchmark also checks the result of the call it times, so the same file
runs as a quick correctness test:

    python -m pytest bench/test_codec_bench.py --benchmark-disable

See docs/benchmarks.md for how to read the figures.
"""
import os
import sys

import pytest

try:
    import heart._core as core
except ImportError:  # run from a checkout without PYTHONPATH
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import heart._core as core

pytest.importorskip("pytest_benchmark")

CLUSTER = 0x0C0FFEE0
NODE = 2
GENERATION = 5
SEQ = 123456
INTERVAL_US = 100_000
PAYLOAD = bytes(range(16))  # 16-byte payload: a typical heartbeat digest
KEY = bytes(range(32, 64))
KEY_ID = 3
PACKET_LEN = 40 + len(PAYLOAD) + 16

ALGS = ["hmac-sha256", "aes-256-gcm"]


def _keyring(alg):
    kr = core.Keyring()
    kr.add(KEY_ID, KEY, alg)
    kr.set_send(KEY_ID)
    return kr


def _seal(kr, seq=SEQ):
    return core.seal(kr, cluster_id=CLUSTER, node_id=NODE, generation=GENERATION,
                     seq=seq, interval_us=INTERVAL_US, payload=PAYLOAD)


@pytest.fixture(params=ALGS)
def alg(request):
    return request.param


@pytest.fixture
def keyring(alg):
    return _keyring(alg)


@pytest.fixture
def packet(keyring):
    return _seal(keyring)


def test_seal(benchmark, alg, keyring):
    benchmark.group = "seal"
    benchmark.extra_info["alg"] = alg
    pkt = benchmark(_seal, keyring)
    assert isinstance(pkt, bytes) and len(pkt) == PACKET_LEN
    assert pkt[:4] == b"HRTB"
    # The sealed packet must authenticate under a separate keyring with the
    # same key (a receiver), and carry our payload.
    hdr, payload = core.decode(_keyring(alg), CLUSTER, pkt)
    assert payload == PAYLOAD
    assert (hdr["node_id"], hdr["seq"], hdr["generation"]) == (NODE, SEQ, GENERATION)
    if alg == "aes-256-gcm":
        assert PAYLOAD not in pkt  # encrypted on the wire
    else:
        assert pkt[40:56] == PAYLOAD


def test_verify(benchmark, alg, packet):
    benchmark.group = "verify"
    benchmark.extra_info["alg"] = alg
    rx = _keyring(alg)  # a receiver's keyring, not the sealer's
    rc = benchmark(core.verify, rx, CLUSTER, packet)
    assert rc == 0
    # and it is a real check: a flipped tag bit and a foreign cluster fail
    bad = bytearray(packet)
    bad[-1] ^= 1
    assert core.verify(rx, CLUSTER, bytes(bad)) == -5  # bad_tag
    assert core.reject_name(5) == "bad_tag"
    assert core.verify(rx, CLUSTER + 1, packet) == -2  # wrong_cluster


def test_decode(benchmark, alg, packet):
    benchmark.group = "decode"
    benchmark.extra_info["alg"] = alg
    rx = _keyring(alg)
    hdr, payload = benchmark(core.decode, rx, CLUSTER, packet)
    assert payload == PAYLOAD
    assert hdr == {"version": 1, "type": 1, "alg": core.ALGORITHMS[alg],
                   "key_id": KEY_ID, "cluster_id": CLUSTER, "node_id": NODE,
                   "generation": GENERATION, "seq": SEQ,
                   "interval_us": INTERVAL_US, "payload_len": len(PAYLOAD)}
    bad = bytearray(packet)
    bad[45] ^= 0x80  # a payload bit: the tag no longer matches
    with pytest.raises(core.WireError):
        core.decode(rx, CLUSTER, bytes(bad))


# The pure-Python receiver that bench/throughput.py measures against the C
# engine must apply the same rules, or the comparison means nothing.

@pytest.mark.parametrize("alg", ALGS)
def test_python_reference_receiver_agrees(alg):
    from _pyreceiver import PyReceiver, gcm_available

    if alg == "aes-256-gcm" and not gcm_available():
        pytest.skip("the Python GCM path needs the 'cryptography' package")
    import _pyreceiver

    assert _pyreceiver.PAYLOAD_MAX == {1: core.HEARTBEAT_PAYLOAD_MAX,
                                       2: core.PAYLOAD_MAX, 3: core.PAYLOAD_MAX}
    assert _pyreceiver.ALG_CODES == core.ALGORITHMS
    kr = _keyring(alg)
    rx = PyReceiver(CLUSTER, 1, [NODE, 9], {KEY_ID: (alg, KEY)})

    def pkt(seq, node=NODE, gen=GENERATION, cluster=CLUSTER, keyring=kr):
        return core.seal(keyring, cluster_id=cluster, node_id=node,
                         generation=gen, seq=seq, interval_us=INTERVAL_US,
                         payload=PAYLOAD)

    def both(p):
        """The Python verdict, checked against the C codec for everything
        but the replay window (which verify does not keep)."""
        got = rx.handle(p)
        if got not in (-6, -3, 1):
            assert got == core.verify(kr, CLUSTER, p)
        return got

    assert both(pkt(100)) == 0
    assert both(pkt(100)) == -6                    # duplicate
    assert both(pkt(98)) == 0                      # late, inside the window
    assert both(pkt(5, gen=GENERATION + 1)) == 0   # the peer restarted
    assert both(pkt(300, gen=GENERATION)) == -6    # its old generation
    assert both(pkt(1, node=9)) == 0               # another peer, own window
    assert both(pkt(1, node=77)) == -3             # not a configured peer
    assert rx.handle(pkt(1, node=1)) == 1          # our own packet
    assert both(pkt(400, cluster=CLUSTER + 1)) == -2
    good = pkt(500, gen=GENERATION + 1)
    bad = bytearray(good)
    bad[-1] ^= 1
    assert both(bytes(bad)) == -5
    assert both(good[:-1]) == -1                   # truncated
    assert both(good + b"\0") == -1               # too long
    assert both(b"XRTB" + good[4:]) == -1          # magic
    assert both(good[:38] + b"\0\1" + good[40:]) == -1  # reserved
    other = core.Keyring()
    other.add(KEY_ID + 1, KEY, alg)
    other.set_send(KEY_ID + 1)
    assert rx.handle(pkt(600, gen=GENERATION + 1, keyring=other)) == -4
    assert both(good) == 0                         # the forgeries moved nothing
    assert rx.accepted == 5


def test_python_replay_window_matches_c():
    """Random (generation, seq) streams through the Python receiver and
    libheart's own hb_replay_check/hb_replay_update (exported by the
    extension module, called through cffi): same verdict every time."""
    import random

    cffi = pytest.importorskip("cffi")
    from _pyreceiver import PyReceiver

    ffi = cffi.FFI()
    ffi.cdef("""
        typedef struct { uint64_t generation; uint64_t max_seq; uint64_t seen;
                         int valid; } hb_replay;
        int hb_replay_check(const hb_replay *r, uint64_t generation, uint64_t seq);
        int hb_replay_update(hb_replay *r, uint64_t generation, uint64_t seq);
    """)
    lib = ffi.dlopen(core._ext.__file__)
    win = ffi.new("hb_replay *")
    kr = _keyring("hmac-sha256")
    rx = PyReceiver(CLUSTER, 1, [NODE], {KEY_ID: ("hmac-sha256", KEY)})
    rng = random.Random(1999)
    gen, top = 3, 1
    for _ in range(3000):
        r = rng.random()
        g = gen
        if r < 0.02:
            gen = g = gen + 1                          # the peer restarts
            top = 1
        elif r < 0.04:
            g = gen - 1                                # its old generation
        if r < 0.5:
            seq = top + rng.randint(0, 3)              # in order, dups
        elif r < 0.6:
            seq = top + rng.randint(60, 70)            # a jump (losses)
        else:
            seq = max(1, top - rng.randint(0, 80))     # late copies
        if g == gen:
            top = max(top, seq)
        c = lib.hb_replay_check(win, g, seq)
        if c == 0:
            lib.hb_replay_update(win, g, seq)
        p = core.seal(kr, cluster_id=CLUSTER, node_id=NODE, generation=g,
                      seq=seq, interval_us=INTERVAL_US, payload=PAYLOAD)
        assert rx.handle(p) == c, (g, seq)
    assert rx.accepted > 500 and rx.rejected[6] > 500
