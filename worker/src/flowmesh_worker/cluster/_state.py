"""What a local cluster leaves in its state directory: the state file, the token store, the lock.

The state file (``cluster.json``) records what ``up`` started: pids with their start times,
the URL, the Redis and key prefix, the log files, the local tenant's token. The token store
(``tokens.json``) keeps that token across ``up``s, one per Redis, prefix and tenant. The
lock (``up.lock``) lets one ``up`` or ``down`` at a time work in a state directory.

This module must never write the state file or the token store other than whole and
mode 0600 (they hold a tenant's token), and never starts, signals or waits on a process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowmesh_core.errors import ConfigError, ConflictError

STATE_FILE = "cluster.json"
TOKENS_FILE = "tokens.json"
_LOCK_FILE = "up.lock"


@dataclass(frozen=True)
class Process:
    """One process of the cluster: what it is, its pid, its start time and its log."""

    name: str
    role: str  # "control plane" or "worker"
    pid: int
    log: str
    started: str | None = None  # /proc start time, to tell a reused pid from ours


@dataclass
class ClusterState:
    """What ``up`` started, as kept in the state file."""

    url: str
    redis_url: str  # credentials redacted
    key_prefix: str
    blob_url: str
    tenant: str
    token: str | None
    started_at: float
    processes: list[Process] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        data = json.loads(text)
        data["processes"] = [Process(**p) for p in data.get("processes", [])]
        return cls(**data)


def read_state(state_dir: Path) -> ClusterState | None:
    """The state file of the cluster started from ``state_dir``, or None."""
    path = state_dir / STATE_FILE
    try:
        return ClusterState.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read {path} ({exc}); remove it if no cluster runs") from exc


def saved_tokens(state_dir: Path) -> dict[str, str]:
    """The token store of ``state_dir``: token by "redis-url prefix tenant"; {} if unreadable."""
    try:
        saved: dict[str, str] = json.loads((state_dir / TOKENS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    return saved


def save_tokens(state_dir: Path, tokens: dict[str, str]) -> None:
    """Replace the token store of ``state_dir`` with ``tokens``."""
    write_private(state_dir / TOKENS_FILE, json.dumps(tokens, indent=2))


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """One ``up`` or ``down`` at a time per state directory."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (state_dir / _LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(
                f"another `flowmesh up` or `flowmesh down` is working in {state_dir}; "
                "wait for it to finish"
            ) from None
        yield


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600), atomically."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)
