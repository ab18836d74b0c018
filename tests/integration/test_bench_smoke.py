"""``bench/scheduler.py --quick`` runs to the end against the real Redis and reports every figure.

A smoke test only: it checks that the benchmark still drives the current code (names it
wraps, routes it calls) and prints what its README promises. It asserts no timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scheduler.py"

FIGURES = (
    "submission rate",
    "assignment rate",
    "end-to-end rate",
    "mean batch size",
    "one-batch-per-round ceiling",
    "submission breakdown",
    "assignment breakdown",
    "policy.choose",
    "store.claim_batch",
    "redis: Lua scripts (server time)",
    "operator overhead",
    "in-process p50",
    "in-process p99",
    "in-process redis round trips/op",
    "ready pool -> claimed",
)


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_quick_benchmark_reports_every_figure(redis_url: str, tmp_path: Path) -> None:
    results = tmp_path / "scheduler.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMESH_")}
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--redis-url", redis_url, "--csv", str(results)],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    for figure in FIGURES:
        assert figure in output, f"{figure!r} missing from the output:\n{output}"
    # The HTTP part runs when the API package exists, and says why not otherwise.
    assert "http (ASGI)" in output
    text = results.read_text()
    assert text.startswith("# date: ")
    for key in ("# nproc: ", "# redis: "):
        assert key in text
    assert "section,figure,value,unit,target,note" in text
