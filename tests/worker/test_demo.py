"""``flowmesh demo`` on a small dataset: real worker processes, real (tiny) models.

The figures asserted are the ones that cannot be noise: items executed vs requested,
joins and cache hits, batch sizes, every workflow done, and the isolated runs executing
more items than the shared one. Seconds, $ and Wh vary with the machine's load, so they
are only checked to be there, not compared.
"""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from flowmesh_core.cli import main as flowmesh
from flowmesh_core.control import NodeState
from flowmesh_core.settings import load_settings
from flowmesh_worker.demo import DemoInterrupted, DemoOptions, run_demo
from flowmesh_worker.demo.report import print_summary
from flowmesh_worker.demo.warmup import Warmup, warm_up
from flowmesh_worker.demo.workload import plan_tenants


@pytest.fixture(scope="module")
def warmed(model_dir: Path) -> Warmup:
    """The ML stack imported and the tiny models built (once for the module)."""
    return warm_up(model_dir)


def quiet_console(screen: io.StringIO | None = None) -> Console:
    return Console(file=screen or io.StringIO(), width=100)


@pytest.mark.timeout(180)
async def test_the_demo_runs_real_work_once_and_in_batches(warmed: Warmup, model_dir: Path) -> None:
    settings = load_settings(worker_model_dir=str(model_dir))
    screen = io.StringIO()
    console = quiet_console(screen)
    result = await run_demo(DemoOptions(per_tenant=6), settings, warmed, console=console)

    shared = result.shared
    assert [t.state for t in shared.tenants] == [NodeState.DONE] * 3, shared.failed
    stats = shared.stats
    assert stats.failed == 0
    assert stats.requested == sum(t.stats.requested for t in shared.tenants)
    assert stats.executed < stats.requested  # overlapping items ran once
    assert stats.cache_hits + stats.joins > 0
    assert stats.mean_batch_size > 1  # tenants' items shared batches
    assert stats.worker_seconds > 0
    assert stats.cost_usd > 0
    assert stats.energy_wh > 0
    assert sum(w.items for w in shared.workers) == stats.executed
    # The figures are separate processes' own: not the demo's, not each other's.
    pids = {w.pid for w in shared.workers} | {w.pid for r in result.isolated for w in r.workers}
    assert len(pids) == 5
    assert os.getpid() not in pids
    assert result.demo_pid == os.getpid()
    assert all(w.cpu_s > 0 for w in shared.workers)
    assert shared.cpu_s == pytest.approx(sum(w.cpu_s for w in shared.workers))
    assert not [pid for pid in pids if _alive(pid)]  # all stopped at the end

    late = result.late
    assert late is not None
    assert late.run.state is NodeState.DONE
    assert late.run.stats.cache_hits == late.run.stats.requested > 0
    assert late.executed == 0

    assert len(result.isolated) == 3
    for alone in result.isolated:
        assert [t.state for t in alone.tenants] == [NodeState.DONE]
        assert alone.stats.executed > 0
    assert sum(r.stats.executed for r in result.isolated) > stats.executed

    assert result.sample is not None
    assert result.sample.vector_dims == 384

    print_summary(console, result)
    shown = screen.getvalue()
    assert "cache hits" in shown
    assert "alone/shared" in shown


@pytest.mark.timeout(120)
async def test_an_interrupt_stops_everything_it_started(warmed: Warmup, model_dir: Path) -> None:
    settings = load_settings(worker_model_dir=str(model_dir))
    interrupt = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, interrupt.set)
    with pytest.raises(DemoInterrupted):
        await run_demo(
            DemoOptions(per_tenant=48, isolated=False),
            settings,
            warmed,
            console=quiet_console(),
            interrupt=interrupt,
        )
    children = [p for p in psutil_children() if "flowmesh" in " ".join(p)]
    assert not children, children


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
    return bool(stat) and stat.rpartition(")")[2].split()[0] != "Z"


def psutil_children() -> list[list[str]]:
    """The command lines of this process's live children (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if stat[0] != "Z" and int(stat[1]) == os.getpid():
            found.append([part.decode(errors="replace") for part in cmdline if part])
    return found


def test_help_explains_the_demo() -> None:
    result = CliRunner().invoke(flowmesh, ["demo", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--prompts", "--no-isolated", "--keep-blobs", "--verbose"):
        assert option in result.output
    assert "embedded store" in result.output


def test_a_bad_prompt_count_is_a_one_line_error() -> None:
    result = CliRunner().invoke(flowmesh, ["demo", "--prompts", "49"])
    assert result.exit_code == 2
    assert "error: --prompts must be between 2 and 48" in result.output
    assert "Traceback" not in result.output


def test_windows_overlap_so_every_prompt_is_asked_for_twice() -> None:
    plans = plan_tenants(32)
    counts = [sum(i in p.indices for p in plans) for i in range(48)]
    assert counts == [2] * 48
    assert [p.window for p in plans] == ["p00-p31", "p16-p47", "p32-p47+p00-p15"]
