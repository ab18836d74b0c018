"""The load run behind ``bench/load.py``: many HTTP clients against a local cluster.

``workload`` builds the workflows, ``cluster`` starts and stops the processes, ``clients``
drives the load, ``report`` turns outcomes and CPU clocks into figures, ``cli`` ties them.
"""

from bench.loadrun.cli import main

__all__ = ["main"]
