"""``flowmesh up`` and ``flowmesh down``: a local cluster of real processes.

``up`` starts one control plane (``flowmesh serve``) and N workers (``flowmesh worker``)
as detached processes (each in its own session, so closing the terminal or Ctrl-C in it
leaves them running), with their output in log files under a state directory. It writes
a state file there (pids, URL, prefix, logs, the local tenant's token; mode 0600), waits
until ``/healthz`` answers and every worker has registered, and makes sure a tenant for
local use exists. ``down`` stops the workers first (SIGTERM: they drain), then the control
plane, kills what does not stop in time, and removes the state file. On the embedded
store (``memory://``, the default) the state directory's embedded server is the
cluster's Redis: ``up`` starts it, ``down`` stops it (its data stays; ``--wipe`` deletes it).

``_state`` holds the state file, the token store and the lock; ``_processes`` starts,
watches and signals processes; ``_up`` and ``_down`` are the two commands' flows.

This package must never signal a process it did not start (a recorded pid is checked
against the process's start time before any signal), or leave processes behind when
``up`` fails.
"""

from flowmesh_core.settings import default_state_dir
from flowmesh_worker.cluster._down import down, wipe_embedded
from flowmesh_worker.cluster._processes import DownReport, process_alive
from flowmesh_worker.cluster._state import (
    STATE_FILE,
    ClusterState,
    Process,
    read_state,
)
from flowmesh_worker.cluster._up import UpOptions, summary, up

__all__ = [
    "STATE_FILE",
    "ClusterState",
    "DownReport",
    "Process",
    "UpOptions",
    "default_state_dir",
    "down",
    "process_alive",
    "read_state",
    "summary",
    "up",
    "wipe_embedded",
]
