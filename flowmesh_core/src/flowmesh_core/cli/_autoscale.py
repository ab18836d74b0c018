"""``flowmesh autoscale``: the replicas each worker pool should have now, and why.

Reads the store directly (as the control plane does) and prints the autoscaler's
recommendation; it changes nothing. KEDA reads the same recommendation from the control
plane's ``/v1/autoscale`` (docs/autoscaling.md).
"""

from __future__ import annotations

import json
import time

import click
from rich.table import Table

from flowmesh_core.autoscale.observe import Recommendation, observe_and_recommend
from flowmesh_core.cli._common import CliContext, console, pass_cli, reports_errors, run_async
from flowmesh_core.errors import ConfigError

__all__ = ["autoscale_command"]


async def _recommend(cli: CliContext) -> Recommendation:
    store = cli.store()
    try:
        return await observe_and_recommend(store, cli.settings, time.time())
    finally:
        await store.aclose()


@click.command("autoscale")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as /v1/autoscale serves it).")
@pass_cli
@reports_errors
def autoscale_command(cli: CliContext, as_json: bool) -> None:
    """Print the replicas each worker pool should have now, and why.

    Pools are declared in settings ([flowmesh.pools.NAME]); a worker joins one with
    `flowmesh worker --pool NAME`. The recommendation drains the ready work within
    autoscale_drain_s on the cheapest pools first, grows a pool one lead early for the
    stages running workflows reach next ("ahead s"), releases idle replicas (the priciest
    pools first) and lets a pool with min_replicas = 0 scale to zero.
    """
    if not cli.settings.pools:
        raise ConfigError(
            "no worker pools declared; add a [flowmesh.pools.NAME] table to flowmesh.toml "
            "(docs/autoscaling.md)"
        )
    rec = run_async(_recommend(cli))
    if as_json:
        click.echo(json.dumps(rec.to_json(), indent=2))
        return
    table = Table("pool", "replicas", "idle", "backlog s", "batches", "ahead s", "desired", "why")
    for name, d in rec.decisions.items():
        v = rec.views[name]
        table.add_row(
            name,
            str(v.replicas),
            str(v.idle),
            f"{v.backlog_s:.1f}",
            str(v.batches),
            f"{v.ahead_s:.1f}",
            str(d.desired),
            d.reason,
        )
    console.print(table)
    console.print(
        f"{rec.waiting_items} item(s) waiting; {rec.unpooled_workers} live worker(s) in no pool"
    )
