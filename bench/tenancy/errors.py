"""The benchmark's two failures: the user's mistake (exit 2) and the run's (exit 1)."""

from __future__ import annotations

__all__ = ["BenchError", "UsageError"]


class BenchError(Exception):
    """The run went wrong (a worker died, a workflow failed): exit status 1, one line."""


class UsageError(BenchError):
    """The user asked for something that cannot run (a bad option, no Redis): status 2."""
