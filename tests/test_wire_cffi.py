"""Property tests of libheart's wire codec through cffi (ABI mode).

This exercises the C library directly, without the Cython layer: random
headers and payloads round-trip under both algorithms, every truncation and
every single-bit flip of an authenticated packet is rejected with a known
cause, arbitrary bytes never parse, the header layout and the tags agree
with an independent Python encoding, and the replay window agrees with a
straightforward model.

The library is HEART_LIBHEART if set, else build/cmake/libheart.so (the
Makefile builds it before running pytest).
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import os
import re
import struct
from pathlib import Path

import pytest

cffi = pytest.importorskip("cffi")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "src_c" / "include" / "heart" / "heart.h"

# Declared exactly as in heart.h (test_cdef_matches_header checks it).
CDEF_STRUCTS = """
typedef struct hb_header {
    uint8_t version;
    uint8_t type;
    uint8_t alg;
    uint8_t key_id;
    uint32_t cluster_id;
    uint32_t node_id;
    uint64_t generation;
    uint64_t seq;
    uint32_t interval_us;
    uint16_t payload_len;
} hb_header;

typedef struct hb_replay {
    uint64_t generation;
    uint64_t max_seq;
    uint64_t seen;
    int valid;
} hb_replay;
"""

CDEF = (
    CDEF_STRUCTS
    + """
typedef struct hb_keyring hb_keyring;

const char *hb_reject_name(int cause);

int hb_keyring_new(hb_keyring **out);
void hb_keyring_free(hb_keyring *kr);
int hb_keyring_add(hb_keyring *kr, uint8_t key_id, int alg,
                   const uint8_t *key, size_t key_len);
int hb_keyring_remove(hb_keyring *kr, uint8_t key_id);
int hb_keyring_set_send(hb_keyring *kr, uint8_t key_id);
int hb_keyring_send_id(const hb_keyring *kr);
int hb_keyring_count(const hb_keyring *kr);

int hb_wire_seal(hb_keyring *kr, hb_header *hdr, const uint8_t *payload,
                 size_t payload_len, uint8_t *out, size_t out_cap);
int hb_wire_parse(const uint8_t *pkt, size_t len, hb_header *hdr);
int hb_wire_open(hb_keyring *kr, const hb_header *hdr, const uint8_t *pkt,
                 size_t len, uint8_t *payload_out, size_t payload_cap);
int hb_wire_decode(hb_keyring *kr, uint32_t cluster_id, const uint8_t *pkt,
                   size_t len, hb_header *hdr, uint8_t *payload_out,
                   size_t payload_cap);

int hb_replay_check(const hb_replay *r, uint64_t generation, uint64_t seq);
int hb_replay_update(hb_replay *r, uint64_t generation, uint64_t seq);
"""
)

# Constants from heart.h (test_constants_match_header checks them).
HEADER_LEN = 40
TAG_LEN = 16
PAYLOAD_MAX = 1176
HEARTBEAT_PAYLOAD_MAX = 128
PACKET_MAX = HEADER_LEN + PAYLOAD_MAX + TAG_LEN
KEY_LEN = 32
HMAC_SHA256, AES256_GCM = 1, 2
HEARTBEAT, STATE, LEAVE = 1, 2, 3
REJ = {"malformed": 1, "wrong_cluster": 2, "unknown_node": 3,
       "unknown_key": 4, "bad_tag": 5, "replay": 6}
CODEC_REJECTIONS = {-REJ["malformed"], -REJ["wrong_cluster"],
                    -REJ["unknown_key"], -REJ["bad_tag"]}


def _library_path() -> Path:
    env = os.environ.get("HEART_LIBHEART")
    return Path(env) if env else ROOT / "build" / "cmake" / "libheart.so"


_ffi = cffi.FFI()
_ffi.cdef(CDEF)
_path = _library_path()
if not _path.exists():
    _why = (f"libheart not found at {_path}: run the CMake build first "
            "(`make cmake-lib`, or cmake -S . -B build/cmake && cmake --build "
            "build/cmake), or point HEART_LIBHEART at a built libheart.so")
    if os.environ.get("HEART_LIBHEART"):
        # Named explicitly (as `make test` does): missing is an error, not a skip.
        raise RuntimeError(_why)
    pytest.skip(_why, allow_module_level=True)
lib = _ffi.dlopen(str(_path))
ffi = _ffi

PROFILE = settings(deadline=None, max_examples=100,
                   suppress_health_check=[HealthCheck.too_slow])
SLOW_PROFILE = settings(deadline=None, max_examples=25,
                        suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- helpers

def keyring(keys: dict[int, tuple[int, bytes]], send: int | None = None):
    kr_p = ffi.new("hb_keyring **")
    assert lib.hb_keyring_new(kr_p) == 0
    kr = ffi.gc(kr_p[0], lib.hb_keyring_free)
    for key_id, (alg, key) in keys.items():
        assert lib.hb_keyring_add(kr, key_id, alg, key, len(key)) == 0
    if send is not None:
        assert lib.hb_keyring_set_send(kr, send) == 0
    return kr


def seal(kr, *, type, cluster_id, node_id, generation, seq, interval_us,
         payload: bytes) -> tuple[bytes, object]:
    h = ffi.new("hb_header *")
    h.type = type
    h.cluster_id = cluster_id
    h.node_id = node_id
    h.generation = generation
    h.seq = seq
    h.interval_us = interval_us
    out = ffi.new("uint8_t[]", PACKET_MAX)
    n = lib.hb_wire_seal(kr, h, payload, len(payload), out, PACKET_MAX)
    assert n == HEADER_LEN + len(payload) + TAG_LEN, n
    return bytes(ffi.buffer(out, n)), h


def decode(kr, cluster_id: int, pkt: bytes, sentinel: int = 0xA5):
    """(rc, header or None, payload, untouched) - untouched tells whether the
    payload buffer kept its sentinel bytes."""
    buf = ffi.new("uint8_t[]", pkt) if pkt else ffi.NULL
    h = ffi.new("hb_header *")
    out = ffi.new("uint8_t[]", [sentinel] * PAYLOAD_MAX)
    rc = lib.hb_wire_decode(kr, cluster_id, buf, len(pkt), h, out, PAYLOAD_MAX)
    data = bytes(ffi.buffer(out, PAYLOAD_MAX))
    untouched = data == bytes([sentinel]) * PAYLOAD_MAX
    if rc == 0:
        return rc, h, data[: h.payload_len], untouched
    return rc, None, b"", untouched


def header_bytes(*, type, alg, key_id, cluster_id, node_id, generation, seq,
                 interval_us, payload_len) -> bytes:
    """The documented layout, encoded independently of the C codec."""
    return struct.pack(">4sBBBBIIQQIHH", b"HRTB", 1, type, alg, key_id,
                       cluster_id, node_id, generation, seq, interval_us,
                       payload_len, 0)


# -------------------------------------------------------------- strategies

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
keys = st.binary(min_size=KEY_LEN, max_size=KEY_LEN)


@st.composite
def messages(draw, max_payload: int = PAYLOAD_MAX):
    type_ = draw(st.sampled_from([HEARTBEAT, STATE, LEAVE]))
    limit = HEARTBEAT_PAYLOAD_MAX if type_ == HEARTBEAT else PAYLOAD_MAX
    return dict(
        type=type_,
        cluster_id=draw(u32),
        node_id=draw(st.integers(1, 2**32 - 1)),
        generation=draw(u64),
        seq=draw(st.integers(1, 2**64 - 1)),
        interval_us=draw(u32),
        payload=draw(st.binary(max_size=min(limit, max_payload))),
    )


algs = st.sampled_from([HMAC_SHA256, AES256_GCM])
key_ids = st.integers(0, 255)


# ------------------------------------------------------------------- tests

def _normalise(c: str) -> str:
    c = re.sub(r"/\*.*?\*/", " ", c, flags=re.DOTALL)
    return re.sub(r"\s+", " ", c).strip()


def test_cdef_matches_header():
    text = HEADER.read_text()
    for name in ("hb_header", "hb_replay"):
        pattern = rf"typedef struct {name} \{{.*?\}} {name};"
        ours = re.search(pattern, CDEF_STRUCTS, re.DOTALL)
        theirs = re.search(pattern, text, re.DOTALL)
        assert ours and theirs, name
        assert _normalise(ours.group(0)) == _normalise(theirs.group(0)), name


def test_constants_match_header():
    text = HEADER.read_text()

    def define(name: str) -> int:
        m = re.search(rf"#define {name} (\w+)", text)
        assert m, name
        return int(m.group(1).rstrip("u"), 0)

    assert define("HB_WIRE_HEADER_LEN") == HEADER_LEN
    assert define("HB_WIRE_TAG_LEN") == TAG_LEN
    assert define("HB_PAYLOAD_MAX") == PAYLOAD_MAX
    assert define("HB_HEARTBEAT_PAYLOAD_MAX") == HEARTBEAT_PAYLOAD_MAX
    assert define("HB_KEY_LEN") == KEY_LEN
    assert define("HB_WIRE_MAGIC") == int.from_bytes(b"HRTB", "big")
    for name, code in REJ.items():
        assert ffi.string(lib.hb_reject_name(code)).decode() == name
    assert ffi.string(lib.hb_reject_name(0)) == b"?"
    assert ffi.sizeof("hb_header") == 40


@PROFILE
@given(msg=messages(), alg=algs, key_id=key_ids, key=keys)
def test_roundtrip(msg, alg, key_id, key):
    kr = keyring({key_id: (alg, key)}, send=key_id)
    pkt, h = seal(kr, **msg)
    payload = msg["payload"]
    # seal fills alg/key id/version/length from the key and the payload
    assert (h.alg, h.key_id, h.version, h.payload_len) == (alg, key_id, 1, len(payload))

    # the header bytes are exactly the documented layout
    fields = {k: v for k, v in msg.items() if k != "payload"}
    assert pkt[:HEADER_LEN] == header_bytes(alg=alg, key_id=key_id,
                                            payload_len=len(payload), **fields)
    if alg == HMAC_SHA256:
        assert pkt[HEADER_LEN:HEADER_LEN + len(payload)] == payload
        want = hmac.new(key, pkt[: HEADER_LEN + len(payload)], hashlib.sha256)
        assert pkt[-TAG_LEN:] == want.digest()[:TAG_LEN]

    rx = keyring({key_id: (alg, key)})
    rc, g, out, _ = decode(rx, msg["cluster_id"], pkt)
    assert rc == 0
    assert out == payload
    for name, value in fields.items():
        assert getattr(g, name) == value, name
    assert (g.alg, g.key_id, g.payload_len) == (alg, key_id, len(payload))

    # parse + open separately agree with decode
    buf = ffi.new("uint8_t[]", pkt)
    p = ffi.new("hb_header *")
    assert lib.hb_wire_parse(buf, len(pkt), p) == 0
    out2 = ffi.new("uint8_t[]", max(1, len(payload)))
    assert lib.hb_wire_open(rx, p, buf, len(pkt), out2, len(payload)) == 0
    assert bytes(ffi.buffer(out2, len(payload))) == payload

    # another cluster is refused before any cryptography
    rc, _, _, untouched = decode(rx, (msg["cluster_id"] + 1) % 2**32, pkt)
    assert rc == -REJ["wrong_cluster"] and untouched


@PROFILE
@given(msg=messages(), key=keys)
def test_gcm_matches_independent_implementation(msg, key):
    """GCM bytes equal HKDF + AESGCM from the `cryptography` package."""
    crypto = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    hkdf_mod = pytest.importorskip("cryptography.hazmat.primitives.kdf.hkdf")
    hashes = pytest.importorskip("cryptography.hazmat.primitives.hashes")

    kr = keyring({7: (AES256_GCM, key)}, send=7)
    pkt, _ = seal(kr, **msg)
    info = struct.pack(">IIQ", msg["cluster_id"], msg["node_id"], msg["generation"])
    subkey = hkdf_mod.HKDF(algorithm=hashes.SHA256(), length=32,
                           salt=b"heart-v1-gcm", info=info).derive(key)
    nonce = b"\0\0\0\0" + struct.pack(">Q", msg["seq"])
    header = pkt[:HEADER_LEN]
    want = crypto.AESGCM(subkey).encrypt(nonce, msg["payload"], header)
    assert pkt[HEADER_LEN:] == want
    if len(msg["payload"]) >= 8:  # not in clear
        assert msg["payload"] not in pkt[HEADER_LEN:]


def expected_cause(pkt: bytes, flipped: bytes, offset: int) -> int:
    """The rejection a single changed byte must cause (docs/protocol.md)."""
    malformed, bad_tag = -REJ["malformed"], -REJ["bad_tag"]
    payload_len = len(pkt) - HEADER_LEN - TAG_LEN
    if offset < 5 or offset in (36, 37, 38, 39):  # magic, version, lengths, reserved
        return malformed
    if offset == 5:  # type: malformed unless still valid for this payload
        new_type = flipped[5]
        if new_type not in (HEARTBEAT, STATE, LEAVE):
            return malformed
        if new_type == HEARTBEAT and payload_len > HEARTBEAT_PAYLOAD_MAX:
            return malformed
        return bad_tag
    if offset == 6:  # alg: invalid, or not the installed key's algorithm
        return -REJ["unknown_key"] if flipped[6] in (HMAC_SHA256, AES256_GCM) else malformed
    if offset == 7:
        return -REJ["unknown_key"]
    if 8 <= offset < 12:
        return -REJ["wrong_cluster"]
    if 12 <= offset < 16 and flipped[12:16] == bytes(4):
        return malformed  # node id 0
    if 24 <= offset < 32 and flipped[24:32] == bytes(8):
        return malformed  # sequence 0
    return bad_tag  # node, generation, sequence, interval, payload, tag


@SLOW_PROFILE
@given(msg=messages(max_payload=48), alg=algs, key=keys)
def test_every_bit_flip_rejected(msg, alg, key):
    kr = keyring({3: (alg, key)}, send=3)
    pkt, _ = seal(kr, **msg)
    cluster = msg["cluster_id"]
    assert decode(kr, cluster, pkt)[0] == 0
    bad = []
    for bit in range(len(pkt) * 8):
        flipped = bytearray(pkt)
        flipped[bit // 8] ^= 1 << (bit % 8)
        rc, _, _, untouched = decode(kr, cluster, bytes(flipped))
        want = expected_cause(pkt, bytes(flipped), bit // 8)
        if rc != want or not untouched:
            bad.append((bit, rc, want, untouched))
    assert not bad


@PROFILE
@given(n=st.integers(HEARTBEAT_PAYLOAD_MAX + 1, PAYLOAD_MAX), alg=algs, key=keys)
def test_heartbeat_payload_limit(n, alg, key):
    kr = keyring({1: (alg, key)}, send=1)
    h = ffi.new("hb_header *")
    h.type, h.node_id, h.seq = HEARTBEAT, 1, 1
    out = ffi.new("uint8_t[]", PACKET_MAX)
    assert lib.hb_wire_seal(kr, h, bytes(n), n, out, PACKET_MAX) == -errno.EMSGSIZE
    # the same length is fine for a state message, not once relabelled
    pkt, _ = seal(kr, type=STATE, cluster_id=0, node_id=1, generation=0, seq=1,
                  interval_us=0, payload=bytes(n))
    assert decode(kr, 0, pkt)[0] == 0
    forged = pkt[:5] + bytes([HEARTBEAT]) + pkt[6:]
    rc, _, _, untouched = decode(kr, 0, forged)
    assert rc == -REJ["malformed"] and untouched


@SLOW_PROFILE
@given(msg=messages(max_payload=200), alg=algs, key=keys)
def test_every_truncation_rejected(msg, alg, key):
    kr = keyring({3: (alg, key)}, send=3)
    pkt, _ = seal(kr, **msg)
    cluster = msg["cluster_id"]
    for cut in range(len(pkt)):
        rc, _, _, untouched = decode(kr, cluster, pkt[:cut])
        assert rc == -REJ["malformed"] and untouched, cut
    for extra in (b"\0", b"\0" * TAG_LEN):
        rc, _, _, untouched = decode(kr, cluster, pkt + extra)
        assert rc == -REJ["malformed"] and untouched


@PROFILE
@given(data=st.binary(max_size=300), magic=st.booleans(), cluster=u32, alg=algs,
       key=keys)
def test_arbitrary_bytes_never_accepted(data, magic, cluster, alg, key):
    if magic:
        data = b"HRTB\x01" + data
    kr = keyring({k: (alg, key) for k in range(4)}, send=0)
    rc, _, _, untouched = decode(kr, cluster, data)
    assert rc in CODEC_REJECTIONS and untouched


@PROFILE
@given(msg=messages(max_payload=64), alg=algs, key=keys, other=keys)
def test_key_mismatches(msg, alg, key, other):
    kr = keyring({9: (alg, key)}, send=9)
    pkt, _ = seal(kr, **msg)
    cluster = msg["cluster_id"]
    other_alg = AES256_GCM if alg == HMAC_SHA256 else HMAC_SHA256
    assert decode(keyring({8: (alg, key)}), cluster, pkt)[0] == -REJ["unknown_key"]
    assert decode(keyring({9: (other_alg, key)}), cluster, pkt)[0] == -REJ["unknown_key"]
    if other != key:
        assert decode(keyring({9: (alg, other)}), cluster, pkt)[0] == -REJ["bad_tag"]
    # rotation: a second key does not disturb the first; removal does
    rx = keyring({9: (alg, key), 10: (other_alg, other)})
    assert decode(rx, cluster, pkt)[0] == 0
    assert lib.hb_keyring_remove(rx, 9) == 0
    assert decode(rx, cluster, pkt)[0] == -REJ["unknown_key"]


# A model of the replay window (docs/protocol.md, "Replay protection").
class ReplayModel:
    def __init__(self):
        self.gen = None
        self.seen: set[int] = set()
        self.max = 0

    def check(self, gen: int, seq: int) -> bool:
        if seq == 0:
            return False
        if self.gen is None or gen > self.gen:
            return True
        if gen < self.gen:
            return False
        if seq > self.max:
            return True
        return self.max - seq < 64 and seq not in self.seen

    def update(self, gen: int, seq: int) -> int:
        restarted = int(self.gen is not None and gen > self.gen)
        if self.gen is None or gen > self.gen:
            self.gen, self.seen, self.max = gen, set(), 0
        self.seen.add(seq)
        self.max = max(self.max, seq)
        return restarted


@PROFILE
@given(ops=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 300)),
                    max_size=300))
def test_replay_window_matches_model(ops):
    r = ffi.new("hb_replay *")
    model = ReplayModel()
    for gen, seq in ops:
        want = model.check(gen, seq)
        rc = lib.hb_replay_check(r, gen, seq)
        assert rc == (0 if want else -REJ["replay"]), (gen, seq)
        if want:
            assert lib.hb_replay_update(r, gen, seq) == model.update(gen, seq)
            assert (r.generation, r.max_seq) == (model.gen, model.max)
