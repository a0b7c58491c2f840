# cython: language_level=3, embedsignature=True
"""heart._core._ext: the Cython layer over libheart (src_c/).

One extension module that includes one .pxi per area (errors, wire,
engine, announce).  The C API is declared once, in libheart.pxd.
"""
import os

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from heart._core.libheart cimport *

include "errors.pxi"
include "wire.pxi"
include "engine.pxi"
include "announce.pxi"

BACKEND = hb_backend().decode()
# The OpenSSL libheart runs with, as it reports itself at run time.
CRYPTO_LIBRARY = hb_crypto_library().decode(errors="replace")
WIRE_VERSION = HB_WIRE_VERSION
PAYLOAD_MAX = HB_PAYLOAD_MAX
HEARTBEAT_PAYLOAD_MAX = HB_HEARTBEAT_PAYLOAD_MAX
KEY_LEN = HB_KEY_LEN
MAX_LINKS = HB_MAX_LINKS
MAX_PEERS = HB_MAX_PEERS


def now_ns():
    """CLOCK_MONOTONIC in nanoseconds (the engine's clock)."""
    return hb_now_ns()
