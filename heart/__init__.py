"""Heart: heartbeat, cluster membership and fast IP failover.

The timing-critical loop runs in C (libheart, in heart._core) on its own
thread; Python does configuration, the cluster state and the actions.
"""
__version__ = "0.1.0"
