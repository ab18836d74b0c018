"""``bench/scheduler.py --quick`` runs to the end against the real Redis and reports every figure.

A smoke test only: it checks that the benchmark still drives the current code (names it
wraps, routes it calls) and prints what its README promises. It asserts no timing.
``bench/batching.py --quick`` likewise, on the embedded store.
"""

from __future__ import annotations

import csv
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


BATCHING = BENCH.parent / "batching.py"


@pytest.mark.timeout(90)
def test_quick_batching_benchmark_reports_a_sane_row_per_batch_size(tmp_path: Path) -> None:
    """``bench/batching.py --quick`` on the embedded store, ``llm.generate`` only.

    ``embed`` is left out to stay well under 20 s: importing sentence-transformers alone
    takes 10 s and more on a small machine. Both kinds run the same benchmark code; only
    the model and the check of a result's shape differ.
    """
    results = tmp_path / "batching.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMESH_")}
    command = [sys.executable, str(BATCHING), "--quick", "--kinds", "llm.generate"]
    run = subprocess.run(
        [*command, "--csv", str(results)],
        env=env,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "batching: 8 items per configuration" in output
    text = results.read_text()
    for key in ("# date: ", "# nproc: ", "# store: embedded", "# load average"):
        assert key in text
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    assert [(row["kind"], row["batch_size"]) for row in rows] == [
        ("llm.generate", "1"),
        ("llm.generate", "4"),
    ]
    for row in rows:
        size = int(row["batch_size"])
        for rate in ("direct_items_per_s", "fabric_items_per_s", "overhead_direct_per_fabric"):
            assert float(row[rate]) > 0, row
        batches, mean = int(row["batches_formed"]), float(row["mean_batch_size"])
        assert 1 <= mean <= size, row  # never bigger than the worker's max_batch
        assert batches * mean == pytest.approx(8), row  # every item ran, once


MULTITENANT = BENCH.parent / "multitenant.py"

MULTITENANT_FIGURES = (
    "requested",
    "executed",
    "batches",
    "mean batch",
    "busy s",
    "CPU-s",
    "busy/CPU",
    "$ busy",
    "$ CPU",
    "Wh",
    "p50 s",
    "p95 s",
    "makespan s",
    "isolated / flowmesh:",
    "flowmesh / oracle:",
    "where the busy time goes",
    "summary over overlaps",
)
VARIANTS = ("isolated", "no-dedup", "no-batching", "flowmesh", "oracle")


@pytest.mark.redis
@pytest.mark.timeout(240)
def test_quick_multitenant_benchmark_reports_every_variant_and_figure(
    redis_url: str, tmp_path: Path
) -> None:
    """``bench/multitenant.py --quick``: real worker processes on the real Redis, every
    variant at one overlap; the CSV and the plot are written. No timing is asserted."""
    results, plot = tmp_path / "multitenant.csv", tmp_path / "multitenant.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMESH_")}
    command = [sys.executable, str(MULTITENANT), "--quick", "--redis-url", redis_url]
    run = subprocess.run(
        [*command, "--csv", str(results), "--png", str(plot)],
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    for figure in (*MULTITENANT_FIGURES, *VARIANTS):
        assert figure in output, f"{figure!r} missing from the output:\n{output}"
    text = results.read_text()
    for key in ("# date: ", "# nproc: ", "# redis: ", "# load average at start: ", "# options: "):
        assert key in text
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    assert [(row["overlap_pct"], row["variant"]) for row in rows] == [("50", v) for v in VARIANTS]
    for row in rows:
        assert float(row["items_executed"]) <= float(row["items_requested"]), row
        assert float(row["worker_cpu_s"]) > 0, row
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.redis
@pytest.mark.timeout(240)
def test_quick_training_stage_runs_a_shared_training_run_once(
    redis_url: str, tmp_path: Path
) -> None:
    """``--quick --stages training``: two tenants of one group ask for the same
    generate -> score -> top-k -> SFT and samples -> score -> pairs -> DPO pipeline on a
    real worker. Isolated, each tenant trains both runs; under flowmesh both runs, and
    every other item, execute once for the two. No timing is asserted."""
    results = tmp_path / "training.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMESH_")}
    command = [sys.executable, str(MULTITENANT), "--quick", "--redis-url", redis_url]
    command += ["--stages", "training", "--variants", "isolated,flowmesh", "--csv", str(results)]
    command += ["--png", str(tmp_path / "unused.png")]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=220, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    for figure in ("training stage", "training runs", "isolated / flowmesh:", "examples/s"):
        assert figure in output, f"{figure!r} missing from the output:\n{output}"
    text = results.read_text()
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    by_variant = {row["variant"]: row for row in rows}
    assert [(row["stage"], row["variant"]) for row in rows] == [
        ("training", "isolated"),
        ("training", "flowmesh"),
    ]
    isolated, flowmesh = by_variant["isolated"], by_variant["flowmesh"]
    assert isolated["training_runs_requested"] == flowmesh["training_runs_requested"] == "4"
    assert isolated["training_runs_executed"] == "4"  # sft and dpo, for each tenant
    assert flowmesh["training_runs_executed"] == "2"  # once for both
    assert isolated["items_executed"] == isolated["items_requested"]
    assert 2 * float(flowmesh["items_executed"]) == float(flowmesh["items_requested"])
    assert not (tmp_path / "unused.png").exists()  # no data stage, no plot


LOAD = BENCH.parent / "load.py"

LOAD_FIGURES = (
    "submitted",
    "accepted",
    "finished",
    "failed",
    "lost",
    "workflows/s",
    "submit ms",
    "submit->done ms",
    "serve 1 (scheduler + API)",
    "serve 2 (API only)",
    "workers (2)",
    "load generator (this process)",
    "CPU ms / workflow",
    "Redis commands / workflow",
    "every accepted workflow finished",
)


@pytest.mark.redis
@pytest.mark.timeout(180)
def test_quick_load_run_finishes_every_workflow_it_accepted(redis_url: str, tmp_path: Path) -> None:
    """``bench/load.py --quick`` with two API replicas: a real local cluster (``flowmesh
    up``, two workers, one ``--no-scheduler`` replica) under 10 clients for a few seconds;
    every accepted workflow finishes, the figures are printed and written. No timing is
    asserted."""
    import json

    figures = tmp_path / "load.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMESH_")}
    command = [sys.executable, str(LOAD), "--quick", "--duration", "5", "--api-replicas", "2"]
    run = subprocess.run(
        [*command, "--redis-url", redis_url, "--json", str(figures)],
        env=env,
        capture_output=True,
        text=True,
        timeout=160,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    for figure in LOAD_FIGURES:
        assert figure in output, f"{figure!r} missing from the output:\n{output}"
    summary = json.loads(figures.read_text())
    assert summary["accepted"] > 0, summary
    assert summary["finished"] == summary["accepted"] == summary["submitted"], summary
    assert summary["failed"] == summary["lost"] == 0, summary
    assert summary["items"]["cache_hits"] == summary["items"]["joined"] == 0, summary
    for figure in ("submit_ms", "submit_to_done_ms"):
        assert set(summary[figure]) == {"p50", "p95", "p99"}, summary
        assert summary[figure]["p50"] <= summary[figure]["p99"], summary
    assert summary["cpu_cores"]["serve 1 (scheduler + API)"] > 0, summary
