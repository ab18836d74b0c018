"""The commands this package adds to ``flowmesh``: worker, demo, up, down.

Kept light: nothing here imports torch or an executor at import time, because
``flowmesh --help`` loads this module.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

import click

from flowmesh_core.cli._common import CliContext, pass_cli, reports_errors
from flowmesh_core.errors import ConfigError

if TYPE_CHECKING:  # imported lazily at run time: `flowmesh --help` must not load torch
    from flowmesh_core.settings import Settings
    from flowmesh_worker.cluster import ClusterState, UpOptions
    from flowmesh_worker.worker import Worker

__all__ = ["demo_command", "down_command", "up_command", "worker_command"]

log = logging.getLogger("flowmesh.worker")

_LEVELS = ("critical", "error", "warning", "info", "debug")


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for value in values:
        key, sep, label = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: write labels as KEY=VALUE", param_hint="--label")
        labels[key] = label
    return labels


@click.command("worker")
@click.option("--worker-id", help="Name in the fleet (default: host-pid-random).")
@click.option(
    "--slots", type=click.IntRange(1, 64), default=1, show_default=True, help="Batches run at once."
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="Most items per batch (what the accelerator's memory allows).",
)
@click.option(
    "--price",
    type=click.FloatRange(min=0),
    default=None,
    help="$ per hour (default: a list price for the detected accelerator).",
)
@click.option(
    "--watts",
    type=click.FloatRange(min=0),
    default=None,
    help="Power draw in W (default: the board power of the detected accelerator).",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="A label shown with the worker (repeatable).",
)
@click.option(
    "--pool",
    default=None,
    metavar="NAME",
    help="The worker pool (declared in settings, [flowmesh.pools.NAME]) this worker "
    "belongs to; its $/h and watts are the defaults of --price and --watts.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="On SIGTERM, seconds the batches in hand get to finish before they are handed back.",
)
@click.option(
    "--log-level", type=click.Choice(_LEVELS), default="info", show_default=True, help="Log level."
)
@pass_cli
@reports_errors
def worker_command(
    cli: CliContext,
    worker_id: str | None,
    slots: int,
    max_batch: int,
    price: float | None,
    watts: float | None,
    labels: tuple[str, ...],
    pool: str | None,
    drain_timeout: float,
    log_level: str,
) -> None:
    """Run a worker: take batches from the control plane, execute them, store the results.

    The worker registers its accelerator (CUDA through torch, else the CPU), price and
    power, heartbeats, and executes the batches assigned to it with the executors of each
    kind (embed, llm.generate, score, data.*, python), keeping models warm. Results go to
    the blob store; the batch is acknowledged only then. SIGTERM or Ctrl-C drains: the
    batches in hand finish, the rest is handed back, and the worker leaves the fleet.

    It needs the control plane's Redis (FLOWMESH_REDIS_URL) and blob store
    (FLOWMESH_BLOB_URL). On one machine the embedded default (memory://) works: every
    FlowMesh process with the same state directory shares its server.
    """
    logging.getLogger("flowmesh").setLevel(log_level.upper())
    settings = cli.settings
    given = _labels(labels)
    pool = pool or settings.worker_pool
    if pool is not None:
        spec = settings.pools.get(pool)
        if spec is None:
            known = ", ".join(sorted(settings.pools)) or "none declared"
            raise click.BadParameter(
                f"{pool!r} is not a pool in settings ({known}); declare it as "
                f"[flowmesh.pools.{pool}] (docs/autoscaling.md)",
                param_hint="--pool",
            )
        # the pool travels with the worker's registration, where the autoscaler counts it
        given["pool"] = pool
        price = spec.usd_per_hour if price is None else price
        watts = spec.watts if watts is None else watts
    from flowmesh_worker.assemble import build_worker

    worker = build_worker(
        settings,
        drain_s=drain_timeout,
        worker_id=worker_id,
        slots=slots,
        max_batch=max_batch,
        price_per_hour=price,
        watts=watts,
        labels=given,
    )
    asyncio.run(run_until_signal(worker))


async def run_until_signal(worker: Worker) -> None:
    """Run ``worker`` until SIGTERM or SIGINT, then drain; close its store."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    try:
        await worker.run(stop)
    finally:
        await worker.store.aclose()


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        return
    log.info("%s: draining (finishing the batches in hand, then leaving)", sig.name)
    stop.set()


@click.command("demo")
@click.option(
    "--prompts",
    "per_tenant",
    type=click.IntRange(min=2),
    default=32,
    show_default=True,
    help="Prompts each tenant takes from the 48 shipped with the demo; each tenant's window "
    "overlaps the next one's by half.",
)
@click.option(
    "--no-isolated",
    is_flag=True,
    help="Skip the second part (each tenant alone), and with it the measured comparison.",
)
@click.option(
    "--keep-blobs",
    type=click.Path(file_okay=False),
    help="Write the shared run's results to DIR and keep them "
    "(default: a temporary directory, removed at the end).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what the control plane and workers do.")
@pass_cli
@reports_errors
def demo_command(
    cli: CliContext, per_tenant: int, no_isolated: bool, keep_blobs: str | None, verbose: bool
) -> None:
    """Run FlowMesh as separate processes and show dedup and batching at work.

    Three tenants submit overlapping workflows at once (template -> generate with
    flowmesh/tiny-gpt -> score with flowmesh/tiny-reward -> top 5 -> embed with
    all-MiniLM-L6-v2) to one control plane (a `flowmesh serve` process) with two worker
    processes, on the embedded store (a bundled Valkey server in a temporary state
    directory; no Redis server, no S3) and a temporary blob directory. Items that several
    tenants ask for run once: the others hit the action cache or join the work in flight,
    and compatible items from different tenants share batches. A live table follows each
    tenant's nodes; a summary then shows items asked for vs executed, cache hits, joins,
    batches, each worker process's CPU-seconds (with its pid), busy seconds, $ and Wh, and
    latency per tenant.

    Then each tenant runs the same work alone (a control plane and one cold worker
    process of its own), and the summary sets the two side by side: the saving is
    measured, not assumed. $ and Wh are busy seconds times the workers' declared price and
    power.

    The generate and score models are tiny random-weight models built on first use into
    the worker model dir (real loading and batching code, meaningless text); the encoder
    is the real all-MiniLM-L6-v2. Nothing is downloaded. It always runs on its own
    embedded store, whatever FLOWMESH_REDIS_URL and FLOWMESH_BLOB_URL say. Ctrl-C stops
    every process it started.
    """
    from pathlib import Path

    from rich.console import Console

    from flowmesh_worker.demo import DemoInterrupted, DemoOptions, main
    from flowmesh_worker.demo.run import logs_to

    kept = Path(keep_blobs).expanduser() if keep_blobs else None
    options = DemoOptions(per_tenant=per_tenant, isolated=not no_isolated, keep_blobs=kept)
    console = Console()
    try:
        with logs_to(console, verbose):
            main(options, cli.settings, console)
    except (DemoInterrupted, KeyboardInterrupt):
        console.print("[yellow]interrupted[/yellow]: everything the demo started is stopped")
        raise SystemExit(130) from None


_STATE_DIR_HELP = (
    "Where the state file, logs and the embedded store live [default: FLOWMESH_STATE_DIR, "
    "else ~/.local/state/flowmesh]."
)


@click.command("up")
@click.option(
    "--workers", type=click.IntRange(0, 64), default=2, show_default=True, help="Workers to start."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Control plane address.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Control plane port [default: server_url's port, 8470].",
)
@click.option(
    "--slots",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Batches each worker runs at once.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="Most items in one batch, per worker.",
)
@click.option("--tenant", default="local", show_default=True, help="Admin tenant for local use.")
@click.option("--state-dir", type=click.Path(file_okay=False), help=_STATE_DIR_HELP)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=90.0,
    show_default=True,
    help="Seconds to wait for /healthz and every worker's registration.",
)
@click.option(
    "--log-level", type=click.Choice(_LEVELS), default="info", show_default=True, help="Log level."
)
@click.option(
    "--demo",
    is_flag=True,
    help="Then submit the demo's workload from three team tenants, to watch live at /ui.",
)
@pass_cli
@reports_errors
def up_command(
    cli: CliContext,
    workers: int,
    host: str,
    port: int | None,
    slots: int,
    max_batch: int,
    tenant: str,
    state_dir: str | None,
    timeout: float,
    log_level: str,
    demo: bool,
) -> None:
    """Start a local cluster: the control plane and N workers.

    Each is a detached `flowmesh serve` / `flowmesh worker` process, logging to a file in
    the state directory; the state file there (mode 0600) lists pids, URL, key prefix,
    logs and the token. `up` returns once /healthz answers and every worker has
    registered, and makes sure an admin tenant for local use exists (--tenant). On
    stdout it prints `export` lines for FLOWMESH_SERVER_URL and FLOWMESH_TOKEN, so
    `eval "$(flowmesh up)"` sets them; the token is kept in the state directory for the
    next `up`. Refuses to start while a cluster from the same state directory runs.

    With no FLOWMESH_REDIS_URL the cluster runs on the embedded store: a Valkey server
    started in the state directory (no Redis install needed), whose data survives
    `down` and the next `up`. With FLOWMESH_REDIS_URL=redis://... it runs on that Redis.
    Stop with `flowmesh down`.

    --demo then submits the demo's workload (`flowmesh demo`'s five-node workflow over
    overlapping prompts) from three team tenants through the API and prints their
    tokens: open the dashboard at URL/ui with the admin token to watch all of it, or
    with a team's token to see only that team's work.
    """
    from pathlib import Path

    from flowmesh_core.cli._common import err_console
    from flowmesh_worker import cluster

    settings = cli.settings
    options = cluster.UpOptions(
        state_dir=Path(state_dir) if state_dir else settings.state_dir,
        workers=workers,
        host=host,
        port=_default_port(settings.server_url) if port is None else port,
        slots=slots,
        max_batch=max_batch,
        tenant=tenant,
        timeout_s=timeout,
        log_level=log_level,
        config_file=cli.config_file,
    )
    state = cluster.up(settings, options, say=lambda line: err_console.print(line, highlight=False))
    err_console.print(cluster.summary(state))
    err_console.print(f"logs in {options.state_dir / 'logs'}", highlight=False)
    click.echo(f"export FLOWMESH_SERVER_URL={state.url}")
    if state.token is not None:
        click.echo(f"export FLOWMESH_TOKEN={state.token}")
        told = f"its token is above and in {options.state_dir / cluster.STATE_FILE}"
    else:
        told = (
            f"it existed already on this Redis and prefix, and its token is not kept in "
            f"{options.state_dir}: use the token you saved, or `up` with --tenant NAME"
        )
    err_console.print(
        f"tenant {state.tenant!r} (admin): {told}. Stop the cluster with `flowmesh down`.",
        highlight=False,
    )
    if demo:
        _submit_demo(settings, options, state)


def _submit_demo(settings: Settings, options: UpOptions, state: ClusterState) -> None:
    from flowmesh_core.cli._common import err_console
    from flowmesh_worker.cluster._demo_load import submit_demo

    # One plain line per team (no table: a token must never be cut to fit a terminal).
    for run in submit_demo(settings, options, state):
        how = "re-attached" if run.replayed else "submitted"
        err_console.print(
            f"demo workload: tenant {run.tenant} workflow {run.workflow_id} ({how}), "
            f"token {run.token}",
            highlight=False,
            soft_wrap=True,
        )
    err_console.print(
        f"watch it at {state.url}/ui: log in with FLOWMESH_TOKEN (admin: every team) or "
        "a team's token (that team's workflow only)",
        highlight=False,
    )


def _default_port(server_url: str) -> int:
    from urllib.parse import urlsplit

    try:
        return urlsplit(server_url).port or 8470
    except ValueError as exc:
        raise ConfigError(f"server_url {server_url!r}: {exc}") from exc


@click.command("down")
@click.option("--state-dir", type=click.Path(file_okay=False), help=_STATE_DIR_HELP)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=75.0,
    show_default=True,
    help="Seconds the workers (then the control plane) get to stop before SIGKILL.",
)
@click.option(
    "--wipe",
    is_flag=True,
    help="Also delete the embedded store's data (action cache, lineage, tenants, tokens).",
)
@reports_errors
def down_command(state_dir: str | None, timeout: float, wipe: bool) -> None:
    """Stop the local cluster that `flowmesh up` started, and the embedded store.

    SIGTERM to the workers first: each finishes the batches in hand (a worker drains for
    up to 60 s), hands back the rest and leaves the fleet. Then SIGTERM to the control
    plane. A process still running after --timeout is killed (SIGKILL), and said so;
    work it held is re-planned by the next control plane. The state file is removed (the
    logs and the saved token stay). Then the state directory's embedded store stops,
    unless another FlowMesh process still uses it; its data stays for the next start,
    unless --wipe is given. With no cluster running, says so and exits 0.
    """
    from pathlib import Path

    from flowmesh_core.cli._common import err_console
    from flowmesh_worker import cluster

    directory = Path(state_dir) if state_dir else cluster.default_state_dir()
    state, report = cluster.down(directory, timeout)
    if wipe:
        data = cluster.wipe_embedded(directory)
        err_console.print(f"deleted the embedded store's data ({data})", highlight=False)
    elif report.embedded_users == 0:
        err_console.print(
            f"stopped the embedded store; its data stays in {directory / 'embedded'} "
            "(`flowmesh down --wipe` deletes it)",
            highlight=False,
        )
    elif report.embedded_users:
        err_console.print(
            f"the embedded store in {directory / 'embedded'} keeps running: "
            f"{report.embedded_users} other FlowMesh process(es) use it",
            highlight=False,
        )
    if state is None:
        err_console.print(f"no local cluster is running (no state file in {directory})")
        return
    for proc in report.killed:
        err_console.print(
            f"{proc.role} {proc.name} (pid {proc.pid}) did not stop within {timeout:g} s: "
            f"killed it (SIGKILL); its log: {proc.log}",
            highlight=False,
        )
    if report.gone:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in report.gone)
        err_console.print(f"already gone: {names}", highlight=False)
    stopped = len(report.stopped) + len(report.killed)
    err_console.print(f"stopped {stopped} process(es) of the cluster at {state.url}")
