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
