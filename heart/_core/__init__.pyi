"""Type stubs for heart._core (the Cython layer over libheart)."""
from typing import Literal, TypedDict

from typing_extensions import TypeAlias

BACKEND: str
WIRE_VERSION: int
PAYLOAD_MAX: int
HEARTBEAT_PAYLOAD_MAX: int
KEY_LEN: int
MAX_LINKS: int
MAX_PEERS: int
ALGORITHMS: dict[str, int]
MESSAGE_TYPES: dict[str, int]
LINK_KINDS: dict[str, int]
DETECTORS: dict[str, int]
EVENT_NAMES: dict[int, str]

Algorithm: TypeAlias = Literal["hmac-sha256", "aes-256-gcm"]
LinkKind: TypeAlias = Literal["unicast", "multicast", "broadcast"]

class WireError(ValueError):
    cause: str
    code: int
    def __init__(self, cause: int) -> None: ...

class Keyring:
    def __init__(self) -> None: ...
    def add(self, key_id: int, key: bytes, alg: Algorithm = ...) -> None: ...
    def remove(self, key_id: int) -> None: ...
    def set_send(self, key_id: int) -> None: ...
    @property
    def send_id(self) -> int | None: ...
    def __len__(self) -> int: ...

class Header(TypedDict):
    version: int
    type: int
    alg: int
    key_id: int
    cluster_id: int
    node_id: int
    generation: int
    seq: int
    interval_us: int
    payload_len: int

def seal(keyring: Keyring, *, type: int = ..., cluster_id: int, node_id: int,
         generation: int, seq: int, interval_us: int = ..., payload: bytes = ...) -> bytes: ...
def parse_header(packet: bytes | bytearray | memoryview) -> Header: ...
def decode(keyring: Keyring, cluster_id: int,
           packet: bytes | bytearray | memoryview) -> tuple[Header, bytes]: ...
def verify(keyring: Keyring, cluster_id: int, packet: bytes | bytearray | memoryview) -> int: ...
def reject_name(cause: int) -> str: ...
def now_ns() -> int: ...

class Event:
    kind: int
    name: str
    node: int
    link: int
    time_ns: int
    value: int
    reason: int
    data: bytes
    @property
    def reason_name(self) -> str | None: ...
    @property
    def message(self) -> str: ...

class LinkStats(TypedDict):
    up: bool
    last_arrival_ns: int
    received: int
    lost: int

class PeerStats(TypedDict):
    node_id: int
    state: Literal["unknown", "up", "late", "down"]
    generation: int
    last_seq: int
    last_arrival_ns: int
    received: int
    interval_us: int
    phi: float
    mean_us: float
    std_us: float
    links: list[LinkStats]

class Counters(TypedDict):
    sent: int
    send_errors: int
    heartbeats_sent: int
    received: int
    accepted: int
    own: int
    rejected: dict[str, int]
    stalls: int
    max_stall_us: int
    missed_ticks: int
    events_dropped: int
    loop_iterations: int

class Engine:
    node_id: int
    cluster_id: int
    generation: int
    def __init__(self, *, cluster_id: int, node_id: int, generation: int,
                 interval_us: int, warntime_us: int | None = ...,
                 deadtime_us: int | None = ..., initdead_us: int | None = ...,
                 detector: Literal["fixed", "phi"] = ..., phi_threshold: float = ...,
                 phi_min_std_us: int | None = ..., phi_acceptable_pause_us: int = ...,
                 phi_window: int = ..., phi_min_samples: int = ...,
                 realtime_priority: int = ..., lock_memory: bool = ...,
                 event_capacity: int = ..., spin_us: int = ...) -> None: ...
    def close(self, leave: bool = ...) -> None: ...
    def __enter__(self) -> Engine: ...
    def __exit__(self, *exc: object) -> None: ...
    def add_key(self, key_id: int, key: bytes, alg: Algorithm = ...) -> None: ...
    def remove_key(self, key_id: int) -> None: ...
    def set_send_key(self, key_id: int) -> None: ...
    def add_link(self, kind: LinkKind = ..., *, bind: str = ..., port: int = ...,
                 dest: str | None = ..., ifname: str | None = ..., ttl: int = ...,
                 loop: bool = ...) -> int: ...
    def link_port(self, link_id: int) -> int: ...
    def add_peer(self, node_id: int) -> None: ...
    def remove_peer(self, node_id: int) -> None: ...
    def set_peer_addr(self, node_id: int, link_id: int, addr: str, port: int = ...) -> None: ...
    def set_payload(self, payload: bytes | bytearray | memoryview) -> None: ...
    def send_state(self, payload: bytes | bytearray | memoryview, to_node: int = ...) -> None: ...
    def start(self) -> None: ...
    def stop(self, leave: bool = ...) -> None: ...
    @property
    def running(self) -> bool: ...
    def debug_stall(self, usec: int) -> None: ...
    def fileno(self) -> int: ...
    def drain(self, max_events: int = ...) -> list[Event]: ...
    def peer(self, node_id: int) -> PeerStats: ...
    def peers(self) -> list[PeerStats]: ...
    def counters(self) -> Counters: ...
    def send_lateness(self) -> list[int]: ...
