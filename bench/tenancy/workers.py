"""The worker processes every variant shares: W real ``flowmesh worker`` subprocesses.

Started once, each in a session of its own (Ctrl-C in the terminal reaches only the
benchmark, which then stops them in order), with torch, OpenMP and MKL at one thread,
no ``FLOWMESH_*`` variable of ours leaking in but the cluster's own, and the output in a
log file. Stopping is SIGTERM (a worker drains and retires), a deadline, then SIGKILL.
CPU time is the processes' own, from ``/proc/PID/stat`` (user + system, children too).

This module must never signal a process it did not start, nor return from ``stop`` while
one of its processes may still run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench.tenancy.errors import BenchError

__all__ = ["WorkerPool", "WorkerProcess"]

MAX_BATCH = 64  # what `flowmesh worker` takes by default; the oracle tries up to this
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class WorkerProcess:
    """One started worker: its fleet id, its process and its log file."""

    worker_id: str
    process: subprocess.Popen[bytes]
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process and its waited-for children."""
        try:
            raw = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError as exc:
            raise BenchError(
                f"cannot read the CPU time of worker {self.worker_id} (pid "
                f"{self.process.pid}) from /proc: {exc}; this benchmark needs Linux"
            ) from exc
        fields = raw.rpartition(")")[2].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def last_line(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip()[:300] if lines else ""


class WorkerPool:
    """``count`` worker processes on ``env``'s Redis, prefix and blob store."""

    def __init__(self, count: int, env: dict[str, str], logs: Path, run_id: str) -> None:
        self.count = count
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMESH_")}
        self.env.update(ONE_THREAD)
        self.env.update(env)
        self.logs = logs
        self.run_id = run_id
        self.workers: list[WorkerProcess] = []

    @property
    def ids(self) -> list[str]:
        return [w.worker_id for w in self.workers]

    def __enter__(self) -> WorkerPool:
        self.logs.mkdir(parents=True, exist_ok=True)
        command = _flowmesh()
        try:
            for i in range(1, self.count + 1):
                self.workers.append(self._spawn(command, f"bench-{self.run_id}-w{i}"))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _spawn(self, command: list[str], worker_id: str) -> WorkerProcess:
        argv = [*command, "worker", "--worker-id", worker_id, "--slots", "1"]
        argv += ["--max-batch", str(MAX_BATCH), "--drain-timeout", "5", "--log-level", "warning"]
        log = self.logs / f"{worker_id}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.logs,  # no ./flowmesh.toml of the caller's is read
                start_new_session=True,
            )
        return WorkerProcess(worker_id, process, log)

    def cpu_seconds(self, worker_ids: list[str] | None = None) -> float:
        """CPU seconds the workers (all, or those named) have used since they started."""
        chosen = self.workers if worker_ids is None else self.by_id(worker_ids)
        return sum(w.cpu_seconds() for w in chosen)

    def by_id(self, worker_ids: list[str]) -> list[WorkerProcess]:
        return [w for w in self.workers if w.worker_id in worker_ids]

    def check_alive(self) -> None:
        """Raise BenchError, with its log's last line, if a worker has exited."""
        for w in self.workers:
            code = w.process.poll()
            if code is not None:
                raise BenchError(
                    f"worker {w.worker_id} exited (status {code}); its log {w.log} ends: "
                    f"{w.last_line() or '(empty)'}"
                )

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every worker still running, wait up to ``timeout_s``, SIGKILL the rest."""
        running = [w.process for w in self.workers if w.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in running:
            try:
                process.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _flowmesh() -> list[str]:
    """The ``flowmesh`` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("flowmesh")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from flowmesh_core.cli import main; main()"]
