"""Functions the ``python`` kind may call in tests (allow-list: ``tests.worker``).

Plain, importable and side-effect free apart from ``slow_echo``'s sleep and
``logged_echo``'s log file: failure tests use ``fail_on`` to make exactly one item fail,
``slow_echo`` to keep a worker busy, and ``logged_echo`` to count executions per item.
Editing a function here changes its version (its source hash); that is expected.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any


def echo(x: Any) -> Any:
    """``x``, unchanged."""
    return x


def add(a: float, b: float) -> float:
    """``a + b``."""
    return a + b


def slow_echo(x: Any, delay: float = 0.5) -> Any:
    """``x``, after sleeping ``delay`` seconds."""
    time.sleep(delay)
    return x


def fail_on(x: Any, bad: Any) -> Any:
    """``x``, unless it equals ``bad``: then ValueError("refusing <x!r>")."""
    if x == bad:
        raise ValueError(f"refusing {x!r}")
    return x


def logged_echo(x: Any, log: str, delay: float = 0.0, bad: Any = None) -> Any:
    """``x``, after appending ``[x, pid]`` to the file ``log`` (one JSON line per execution,
    written before anything else, so a killed execution is counted too) and sleeping
    ``delay`` seconds; ValueError("refusing <x!r>") if ``x`` equals ``bad``."""
    line = json.dumps([x, os.getpid()]) + "\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())  # one O_APPEND write: lines from processes never mix
    finally:
        os.close(fd)
    time.sleep(delay)
    if x == bad:
        raise ValueError(f"refusing {x!r}")
    return x
