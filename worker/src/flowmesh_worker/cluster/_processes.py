"""The processes of a local cluster: start them detached, watch them, stop them.

A process is started in a session of its own (closing the terminal leaves it running) with
its output in a log file; it is told apart from a later process that reuses its pid by its
start time in /proc. Stopping is SIGTERM, a deadline, then SIGKILL for what is left.

This module must never signal a pid it has not just checked to be the recorded process
(same pid, same start time), and never waits on a process without a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from flowmesh_core.errors import ServiceUnavailableError
from flowmesh_worker.cluster._state import Process

_UNKNOWN_STATUS = -1000  # a process that ended, reaped by someone else


@dataclass
class DownReport:
    """What ``down`` did: the processes stopped, killed, and already gone."""

    stopped: list[Process] = field(default_factory=list)
    killed: list[Process] = field(default_factory=list)
    gone: list[Process] = field(default_factory=list)
    embedded_users: int | None = None  # processes still using the embedded store (None: none)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None (no such process, no /proc)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return raw.rpartition(")")[2].split()


def start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not), and is the process that started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process took the pid
    stat = _proc_stat(pid)
    if stat is None:
        return sys.platform != "linux"  # no /proc to ask: trust kill(0)
    return stat[0] != "Z" and (started is None or stat[19] == started)


def spawn(argv: list[str], env: dict[str, str], log: Path) -> int:
    """Start ``argv`` detached (a new session), stdin from /dev/null, output to ``log``."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    except NotImplementedError:  # no POSIX_SPAWN_SETSID: a process group of its own
        return os.posix_spawn(argv[0], argv, env, file_actions=actions, setpgroup=0)


def _reap(pid: int) -> int | None:
    """The exit status of our child ``pid`` if it has ended, else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None if process_alive(pid) else _UNKNOWN_STATUS
    return os.waitstatus_to_exitcode(status) if done else None


def flowmesh_argv() -> list[str]:
    """How to run the ``flowmesh`` command with this interpreter."""
    script = Path(sys.executable).with_name("flowmesh")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from flowmesh_core.cli import main; main()"]


def stop(processes: list[Process], timeout_s: float, report: DownReport) -> None:
    """SIGTERM ``processes``, wait up to ``timeout_s``, SIGKILL the ones left."""
    running = []
    for proc in processes:
        if process_alive(proc.pid, proc.started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            running.append(proc)
        else:
            report.gone.append(proc)
    deadline = time.monotonic() + timeout_s
    while running and time.monotonic() < deadline:
        for proc in [p for p in running if _ended(p)]:
            running.remove(proc)
            report.stopped.append(proc)
        time.sleep(0.1)
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        report.killed.append(proc)
    deadline = time.monotonic() + 5
    while any(not _ended(p) for p in running) and time.monotonic() < deadline:
        time.sleep(0.05)


def _ended(proc: Process) -> bool:
    if _reap(proc.pid) is not None:
        return True
    return not process_alive(proc.pid, proc.started)


def died(processes: list[Process]) -> None:
    """Raise, pointing at the log, if one of the processes has exited."""
    for proc in processes:
        code = _reap(proc.pid)
        if code is None:
            continue
        last = _last_line(Path(proc.log))
        status = f"status {code}" if code >= 0 else f"signal {-code}"
        status = "status unknown" if code == _UNKNOWN_STATUS else status
        raise ServiceUnavailableError(
            f"the {proc.role} {proc.name} (pid {proc.pid}) exited ({status}) while starting; "
            f"see its log {proc.log}" + (f" (last line: {last})" if last else "")
        )


def _last_line(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""
