# The wire codec and keyring, for tests, benchmarks and tools.  The engine
# uses the same C functions on its own thread.

ALGORITHMS = {"hmac-sha256": HB_AUTH_HMAC_SHA256, "aes-256-gcm": HB_AUTH_AES256_GCM}
MESSAGE_TYPES = {"heartbeat": HB_MSG_HEARTBEAT, "state": HB_MSG_STATE,
                 "leave": HB_MSG_LEAVE}


cdef int _alg_code(object alg) except -1:
    try:
        return ALGORITHMS[alg]
    except KeyError:
        raise ValueError(f"unknown algorithm {alg!r}: expected one of "
                         f"{', '.join(ALGORITHMS)}") from None


cdef class Keyring:
    """Authentication keys (ids 0..255); any is accepted, one seals."""

    cdef hb_keyring *kr

    def __cinit__(self):
        _check(hb_keyring_new(&self.kr), "hb_keyring_new")

    def __dealloc__(self):
        if self.kr is not NULL:
            hb_keyring_free(self.kr)
            self.kr = NULL

    def add(self, int key_id, bytes key, alg="hmac-sha256"):
        if not 0 <= key_id <= 255:
            raise ValueError(f"key id {key_id} out of range 0..255")
        if len(key) != HB_KEY_LEN:
            raise ValueError(f"key {key_id}: {len(key)} bytes, expected {HB_KEY_LEN}")
        _check(hb_keyring_add(self.kr, key_id, _alg_code(alg), key, len(key)),
               f"add key {key_id}")

    def remove(self, int key_id):
        _check(hb_keyring_remove(self.kr, key_id), f"remove key {key_id}")

    def set_send(self, int key_id):
        _check(hb_keyring_set_send(self.kr, key_id), f"set send key {key_id}")

    @property
    def send_id(self):
        cdef int rc = hb_keyring_send_id(self.kr)
        return None if rc < 0 else rc

    def __len__(self):
        return hb_keyring_count(self.kr)


def seal(Keyring keyring not None, *, int type=HB_MSG_HEARTBEAT,
         uint32_t cluster_id, uint32_t node_id, uint64_t generation,
         uint64_t seq, uint32_t interval_us=0, bytes payload=b""):
    """Build one authenticated packet (wire format v1)."""
    cdef hb_header h
    cdef uint8_t out[HB_PACKET_MAX]
    memset(&h, 0, sizeof(h))
    h.version = HB_WIRE_VERSION
    h.type = type
    h.cluster_id = cluster_id
    h.node_id = node_id
    h.generation = generation
    h.seq = seq
    h.interval_us = interval_us
    cdef int n = hb_wire_seal(keyring.kr, &h, payload, len(payload), out, sizeof(out))
    _check(n, "hb_wire_seal")
    return out[:n]


def parse_header(const uint8_t[::1] packet not None):
    """The clear header of a packet as a dict (no authentication)."""
    cdef hb_header h
    cdef int rc = hb_wire_parse(&packet[0] if packet.shape[0] else NULL,
                                packet.shape[0], &h)
    if rc < 0:
        raise WireError(-rc)
    return _header_dict(&h)


cdef dict _header_dict(const hb_header *h):
    return {"version": h.version, "type": h.type, "alg": h.alg,
            "key_id": h.key_id, "cluster_id": h.cluster_id,
            "node_id": h.node_id, "generation": h.generation, "seq": h.seq,
            "interval_us": h.interval_us, "payload_len": h.payload_len}


def decode(Keyring keyring not None, uint32_t cluster_id,
           const uint8_t[::1] packet not None):
    """Authenticate and decode a packet: (header dict, payload bytes).
    Raises WireError naming the cause when it is rejected."""
    cdef hb_header h
    cdef uint8_t payload[HB_PAYLOAD_MAX]
    # The keyring keeps a cache of derived keys: the GIL serialises its use.
    cdef int rc = hb_wire_decode(keyring.kr, cluster_id,
                                 &packet[0] if packet.shape[0] else NULL,
                                 packet.shape[0], &h, payload, sizeof(payload))
    if rc < 0:
        raise WireError(-rc)
    return _header_dict(&h), payload[:h.payload_len]


def verify(Keyring keyring not None, uint32_t cluster_id,
           const uint8_t[::1] packet not None):
    """Like decode, without building Python objects: 0 or -cause."""
    cdef hb_header h
    cdef uint8_t payload[HB_PAYLOAD_MAX]
    return hb_wire_decode(keyring.kr, cluster_id,
                          &packet[0] if packet.shape[0] else NULL,
                          packet.shape[0], &h, payload, sizeof(payload))


def reject_name(int cause):
    return hb_reject_name(cause).decode()
