"""Hosts on one machine: Linux network namespaces joined by veth pairs to a bridge.

``Network`` makes one namespace per host (``fmmh-<pid>-<random>-<role>``) and one more
for the bridge, so nothing is added to the root namespace: each host has ``eth0`` (the
end of a veth pair whose other end is a port of ``br0`` in the bridge namespace) with an
address on a private /24, and its own loopback. Processes run inside a host through
``ip netns exec``; this process talks to the hosts from one of them (``entered``: the
calling thread joins that namespace, as ``setns(2)`` does per thread).

``down`` kills every process left in the run's namespaces and deletes them, and never
raises (teardown must finish even when the test failed). ``clean_stale`` deletes the
namespaces of runs whose process is gone (a killed pytest), found by the name prefix
and the pid in the name, so parallel runs never delete each other's.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

PREFIX = "fmmh"
BRIDGE = "br0"
LINK = "eth0"
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def require_root_and_tools(*tools: str) -> None:
    """Fail (never skip) where namespaces cannot be made (not root, no ``ip``) or a
    program the hosts run is missing."""
    if shutil.which("ip") is None:
        pytest.fail("the multi-host test needs iproute2's `ip` (apt-get install iproute2)")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(f"the multi-host test runs {tool}, which is not on PATH")
    if os.geteuid() != 0:
        pytest.fail("the multi-host test makes network namespaces: run it as root")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``; raises with ip's own message when ``check`` and it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Host:
    """One "machine": a namespace, its address on the subnet, and its bridge port."""

    role: str
    netns: str
    address: str
    port: str  # the veth end in the bridge namespace

    def exec_prefix(self) -> list[str]:
        """The argv prefix that runs a command on this host."""
        return ["ip", "netns", "exec", self.netns]


class Network:
    """The run's namespaces; ``up`` makes them, ``down`` removes them."""

    def __init__(self, roles: list[str], subnet: str = "10.77.0") -> None:
        if len(roles) > 250:
            raise ValueError("a /24 holds at most 250 hosts here")
        self.run_id = f"{PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.bridge_ns = f"{self.run_id}-br"
        self.hosts = {
            role: Host(role, f"{self.run_id}-{role}", f"{subnet}.{i + 2}", f"p{i}")
            for i, role in enumerate(roles)
        }
        self._made: list[str] = []

    def __getitem__(self, role: str) -> Host:
        return self.hosts[role]

    def up(self) -> None:
        """Make the bridge and every host, each host's link up with its address."""
        self._add_ns(self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", self.bridge_ns, "link", "set", BRIDGE, "up")
        for host in self.hosts.values():
            self._add_ns(host.netns)
            ip("-n", self.bridge_ns, "link", "add", host.port, "type", "veth",
               "peer", "name", LINK, "netns", host.netns)  # fmt: skip
            ip("-n", self.bridge_ns, "link", "set", host.port, "master", BRIDGE, "up")
            ip("-n", host.netns, "link", "set", "lo", "up")
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", LINK)
            ip("-n", host.netns, "link", "set", LINK, "up")

    def _add_ns(self, name: str) -> None:
        ip("netns", "add", name)
        self._made.append(name)

    def partition(self, host: Host) -> None:
        """Cut ``host`` off: its link goes down (inside its namespace)."""
        ip("-n", host.netns, "link", "set", LINK, "down")

    def heal(self, host: Host) -> None:
        """Bring ``host``'s link back up; its address and route come back with it."""
        ip("-n", host.netns, "link", "set", LINK, "up")

    def down(self) -> list[str]:
        """Kill what still runs in the run's namespaces and delete them; what failed."""
        return [p for name in reversed(self._made) for p in _remove_ns(name)]

    @contextlib.contextmanager
    def entered(self, host: Host) -> Iterator[None]:
        """Run the calling thread (and the threads it starts) on ``host`` meanwhile."""
        home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        try:
            _setns_path(f"/run/netns/{host.netns}")
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)


def clean_stale() -> list[str]:
    """Delete namespaces of earlier runs whose pytest process is gone; what failed."""
    listed = ip("netns", "list", check=False).stdout.split()
    problems = []
    for name in listed:
        parts = name.split("-")
        if len(parts) < 4 or parts[0] != PREFIX or not parts[1].isdigit():
            continue
        if _alive(int(parts[1])):
            continue
        problems += _remove_ns(name)
    return problems


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_ns(name: str) -> list[str]:
    problems = []
    pids = ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    done = ip("netns", "del", name, check=False)
    if done.returncode != 0 and "No such file" not in done.stderr:
        problems.append(f"ip netns del {name}: {done.stderr.strip()}")
    return problems


def _setns_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")
