"""``flowmesh down``: stop the local cluster that ``up`` started from a state directory.

The workers go first (SIGTERM: each drains and hands back the rest), then the control
plane; what has not stopped within the timeout is killed, and the state file is removed.

This module must never signal a process that the state file does not record (each pid is
checked against its recorded start time first), and never stops the control plane before
the workers have had their time to drain.
"""

from __future__ import annotations

from pathlib import Path

from flowmesh_core.store.embedded import EmbeddedServer
from flowmesh_worker.cluster._processes import DownReport, stop
from flowmesh_worker.cluster._state import STATE_FILE, ClusterState, locked, read_state


def down(state_dir: Path, timeout_s: float) -> tuple[ClusterState | None, DownReport]:
    """Stop the cluster started from ``state_dir``: workers first (they drain), then the
    control plane, each given ``timeout_s`` before SIGKILL; the state file is removed.
    Then the embedded store of ``state_dir`` stops too, unless another process still
    uses it (its data stays: see ``wipe_embedded``).

    Returns (None, empty report) when no cluster was started from there.
    """
    report = DownReport()
    with locked(state_dir):
        state = read_state(state_dir)
        if state is not None:
            workers = [p for p in state.processes if p.role == "worker"]
            stop(workers, timeout_s, report)
            stop([p for p in state.processes if p.role != "worker"], timeout_s, report)
            (state_dir / STATE_FILE).unlink(missing_ok=True)
        server = EmbeddedServer(state_dir)
        if server.dir.exists():
            server.stop()
            report.embedded_users = len(server.owners()) if server.pid() else 0
    return state, report


def wipe_embedded(state_dir: Path) -> Path:
    """Stop the embedded store of ``state_dir`` and delete its data; the folder it was in."""
    server = EmbeddedServer(state_dir)
    server.wipe()
    return server.data_dir
