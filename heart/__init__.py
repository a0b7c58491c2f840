"""Heart: heartbeat, cluster membership and fast IP failover.

The timing-critical loop runs in C (libheart, in heart._core) on its own
thread; Python does configuration, the cluster state and the actions.
"""
# The one place the version lives: pyproject.toml reads it from here
# ([tool.setuptools.dynamic], statically, without importing the package), and
# `heart --version` prints it.  Keep this module import-light: no C extension
# and no third-party imports here.
__version__ = "0.1.0"
