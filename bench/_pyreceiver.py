"""A pure-Python heartbeat receiver, the baseline of bench/throughput.py.

It applies the receive checks of the C engine (docs/protocol.md, "Order of
checks on receive") to each datagram, in Python:

1. structure: exact length, magic, version, type, alg, reserved, node id and
   sequence nonzero, payload limit of the type;
2. cluster id;
3. own packets are counted and ignored, unknown senders rejected;
4. replay window check: per peer, (generation, highest sequence, a 64-bit
   bitmap of the 64 sequences up to it), the rules of src_c/core/replay.c;
5. key id installed with that algorithm;
6. tag: HMAC-SHA256 with the standard library (hmac.digest, first 16 bytes,
   hmac.compare_digest).  AES-256-GCM is supported when the third-party
   ``cryptography`` package is installed (HKDF subkey per sender identity,
   cached after a verified packet, like crypto.c);
7. replay window update, then the packet counts as accepted.

It does no more than that (no detector, no per-link statistics, no events),
so it is, if anything, flattering to Python.  ``PyReceiver.handle`` returns 0
for an accepted packet and -cause otherwise, with the causes of heart.h
(enum hb_reject), so it can be checked against heart._core.verify.
"""
import asyncio
import hashlib
import hmac
import struct

MAGIC = 0x48525442
VERSION = 1
HEADER_LEN = 40
TAG_LEN = 16
REPLAY_WINDOW = 64
MASK64 = (1 << 64) - 1

# enum hb_msg_type -> largest payload
PAYLOAD_MAX = {1: 128, 2: 1176, 3: 1176}  # HB_HEARTBEAT_PAYLOAD_MAX, HB_PAYLOAD_MAX
ALG_HMAC = 1
ALG_GCM = 2
ALG_CODES = {"hmac-sha256": ALG_HMAC, "aes-256-gcm": ALG_GCM}

# enum hb_reject
MALFORMED = 1
WRONG_CLUSTER = 2
UNKNOWN_NODE = 3
UNKNOWN_KEY = 4
BAD_TAG = 5
REPLAY = 6
REJECT_NAMES = {MALFORMED: "malformed", WRONG_CLUSTER: "wrong_cluster",
                UNKNOWN_NODE: "unknown_node", UNKNOWN_KEY: "unknown_key",
                BAD_TAG: "bad_tag", REPLAY: "replay"}

#   magic version type alg key_id cluster node generation seq interval plen rsv
HEADER = struct.Struct("!IBBBBIIQQIHH")
assert HEADER.size == HEADER_LEN

GCM_SALT = b"heart-v1-gcm"


def _gcm_tools():
    """(AESGCM, HKDF, SHA256, InvalidTag) from ``cryptography``, or None."""
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.hashes import SHA256
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError:
        return None
    return AESGCM, HKDF, SHA256, InvalidTag


def gcm_available():
    return _gcm_tools() is not None


class PyReceiver:
    """The receive checks of one engine, in Python.

    keys: {key_id: (alg name, 32-byte key)}; peers: node ids.
    """

    def __init__(self, cluster_id, node_id, peers, keys):
        self.cluster_id = cluster_id
        self.node_id = node_id
        # per peer: [valid, generation, max_seq, seen bitmap]
        self.windows = {p: [False, 0, 0, 0] for p in peers}
        self.keys = {}
        for key_id, (alg, key) in keys.items():
            code = ALG_CODES[alg]
            if code == ALG_GCM and not gcm_available():
                raise RuntimeError("AES-256-GCM in Python needs the 'cryptography'"
                                   " package (pip install cryptography)")
            self.keys[key_id] = (code, bytes(key))
        self._gcm = _gcm_tools()
        self._gcm_cache = {}  # (key_id, cluster, node, generation) -> AESGCM
        self.received = 0
        self.accepted = 0
        self.own = 0
        self.rejected = [0] * 7

    def _reject(self, cause):
        self.rejected[cause] += 1
        return -cause

    def _gcm_open(self, key_id, key, data, node, generation, seq, plen):
        AESGCM, HKDF, SHA256, InvalidTag = self._gcm
        ident = (key_id, self.cluster_id, node, generation)
        aead = self._gcm_cache.get(ident)
        nonce = b"\0\0\0\0" + seq.to_bytes(8, "big")
        fresh = aead is None
        if fresh:
            info = struct.pack("!IIQ", self.cluster_id, node, generation)
            subkey = HKDF(algorithm=SHA256(), length=32, salt=GCM_SALT,
                          info=info).derive(key)
            aead = AESGCM(subkey)
        try:
            aead.decrypt(nonce, data[HEADER_LEN:], data[:HEADER_LEN])
        except InvalidTag:
            return False
        if fresh:  # cache only what verified, as crypto.c does
            self._gcm_cache[ident] = aead
        return True

    def handle(self, data):
        """Check one datagram: 0 accepted, -cause rejected, 1 our own."""
        self.received += 1
        n = len(data)
        if n < HEADER_LEN + TAG_LEN:
            return self._reject(MALFORMED)
        (magic, version, mtype, alg, key_id, cluster, node, generation, seq,
         _interval, plen, reserved) = HEADER.unpack_from(data)
        if (magic != MAGIC or reserved != 0 or version != VERSION
                or alg not in (ALG_HMAC, ALG_GCM) or node == 0 or seq == 0
                or plen > PAYLOAD_MAX.get(mtype, -1)
                or n != HEADER_LEN + plen + TAG_LEN):
            return self._reject(MALFORMED)
        if cluster != self.cluster_id:
            return self._reject(WRONG_CLUSTER)
        if node == self.node_id:
            self.own += 1
            return 1
        w = self.windows.get(node)
        if w is None:
            return self._reject(UNKNOWN_NODE)
        # replay check (hb_replay_check): changes nothing
        valid, wgen, max_seq, seen = w
        if valid:
            if generation < wgen:
                return self._reject(REPLAY)
            if generation == wgen and seq <= max_seq:
                behind = max_seq - seq
                if behind >= REPLAY_WINDOW or (seen >> behind) & 1:
                    return self._reject(REPLAY)
        k = self.keys.get(key_id)
        if k is None or k[0] != alg:
            return self._reject(UNKNOWN_KEY)
        end = HEADER_LEN + plen
        if alg == ALG_HMAC:
            tag = hmac.digest(k[1], data[:end], hashlib.sha256)[:TAG_LEN]
            if not hmac.compare_digest(tag, data[end:]):
                return self._reject(BAD_TAG)
        elif not self._gcm_open(key_id, k[1], data, node, generation, seq, plen):
            return self._reject(BAD_TAG)
        # replay update (hb_replay_update), for an authenticated packet
        if not valid or generation > wgen:
            w[0], w[1], w[2], w[3] = True, generation, seq, 1
        elif seq > max_seq:
            shift = seq - max_seq
            w[2] = seq
            w[3] = 1 if shift >= REPLAY_WINDOW else ((seen << shift) | 1) & MASK64
        else:
            w[3] = seen | (1 << (max_seq - seq))
        self.accepted += 1
        return 0


class ReceiverProtocol(asyncio.DatagramProtocol):
    """asyncio glue: every datagram goes through PyReceiver.handle."""

    def __init__(self, receiver):
        self.receiver = receiver
        self.transport = None
        self.errors = 0

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.receiver.handle(data)

    def error_received(self, exc):
        self.errors += 1
