"""heart._core: the C heartbeat engine and wire codec (libheart) under Cython."""
from heart._core._ext import (
    ALGORITHMS,
    BACKEND,
    DETECTORS,
    EVENT_NAMES,
    HEARTBEAT_PAYLOAD_MAX,
    KEY_LEN,
    LINK_KINDS,
    MAX_LINKS,
    MAX_PEERS,
    MESSAGE_TYPES,
    PAYLOAD_MAX,
    WIRE_VERSION,
    Engine,
    Event,
    Keyring,
    WireError,
    decode,
    now_ns,
    parse_header,
    reject_name,
    seal,
    verify,
)

__all__ = [
    "ALGORITHMS", "BACKEND", "DETECTORS", "EVENT_NAMES", "HEARTBEAT_PAYLOAD_MAX",
    "KEY_LEN", "LINK_KINDS", "MAX_LINKS", "MAX_PEERS", "MESSAGE_TYPES",
    "PAYLOAD_MAX", "WIRE_VERSION", "Engine", "Event", "Keyring", "WireError",
    "decode", "now_ns", "parse_header", "reject_name", "seal", "verify",
]
