"""``flowmesh doctor``: does this configuration work? Checks each part and says what to fix.

Every check runs for real against the configured services: the store's Lua scripts are
compiled on the server, a dedup round trip (join-or-create, claim, complete) runs in a
scratch key space that is deleted afterwards, and a probe blob goes into the blob store
and is read back and verified.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import click
from rich.table import Table

from flowmesh_core.blobs import BlobStore
from flowmesh_core.cli._common import CliContext, console, pass_cli, reports_errors, run_async
from flowmesh_core.errors import FlowMeshError
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.keys import expand
from flowmesh_core.models import Operator, Requester
from flowmesh_core.registry import Registry
from flowmesh_core.store import JoinOutcome, Store

__all__ = ["doctor"]

PROBE = b"flowmesh doctor probe\n"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


async def _check(name: str, step: Callable[[], Awaitable[str]]) -> Check:
    try:
        return Check(name, True, await step())
    except FlowMeshError as exc:
        return Check(name, False, str(exc))


async def _dedup_round_trip(store: Store) -> str:
    scratch = store.scratch(uuid.uuid4().hex)
    probe = Operator(kind="embed", model="doctor-probe", inputs={"texts": [uuid.uuid4().hex]})
    (item,) = expand(probe, Registry.default(), max_inline_bytes=1 << 20).items
    try:
        outcomes = []
        for i, tenant in enumerate(("doctor-a", "doctor-b")):
            req = Requester(tenant=tenant, workflow=f"doctor{i}", node="probe")
            outcomes.append((await scratch.join_or_create("global", req, item)).outcome)
        fence = await scratch.new_fence()
        await scratch.hold_lease(fence, ttl_s=10)
        claimed = await scratch.claim_batch(item.signature, 8, "doctor", "doctor-batch", fence)
        done = await scratch.complete("global", item.op_key, digest_bytes(PROBE))
        expected = [JoinOutcome.CREATED, JoinOutcome.JOINED]
        if outcomes != expected or claimed != 1 or done.released != 2:
            raise FlowMeshError(
                f"dedup round trip went wrong: {outcomes}, claimed {claimed}, "
                f"released {done.released}; the Redis server misbehaves"
            )
        return "2 requests, 1 item claimed and executed, both released"
    finally:
        await scratch.purge()


def _blob_round_trip(blobs: BlobStore) -> str:
    started = time.perf_counter()
    put = blobs.put_bytes(PROBE)
    data = blobs.get_bytes(put.digest)
    if data != PROBE:
        raise FlowMeshError("the blob store returned different bytes than were stored")
    return f"put + verified get in {(time.perf_counter() - started) * 1000:.1f} ms"


async def _run_checks(cli: CliContext) -> list[Check]:
    store = cli.store()
    blobs = cli.blob_store()
    kind = f"embedded, in {cli.settings.state_dir}" if store.embedded else "server"
    checks = [Check("settings", True, f"redis {store.shown_url} ({kind}), blobs {blobs.url}")]
    try:

        async def server() -> str:
            await store.ping()
            return f"answers; version {await store.server_version()}"

        async def capabilities() -> str:
            await store.check_capabilities()
            return "Lua scripts compile; streams and consumer groups work"

        async def dedup() -> str:
            return await _dedup_round_trip(store)

        async def blob_ping() -> str:
            blobs.ping()
            return "reachable and writable"

        async def blob_trip() -> str:
            return _blob_round_trip(blobs)

        checks.append(await _check("redis", server))
        if checks[-1].ok:
            checks.append(await _check("redis features", capabilities))
            checks.append(await _check("dedup round trip", dedup))
        checks.append(await _check("blob store", blob_ping))
        if checks[-1].ok:
            checks.append(await _check("CAS round trip", blob_trip))
    finally:
        await store.aclose()
    return checks


@click.command()
@pass_cli
@reports_errors
def doctor(cli: CliContext) -> None:
    """Check that the configured Redis and blob store answer and work; say what is wrong."""
    checks = run_async(_run_checks(cli))
    table = Table("check", "", "detail", title="flowmesh doctor", title_justify="left")
    for check in checks:
        mark = "[green]ok[/]" if check.ok else "[bold red]FAIL[/]"
        table.add_row(check.name, mark, check.detail)
    console.print(table)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        console.print(f"[bold red]{len(failed)} check(s) failed:[/] {', '.join(failed)}")
        sys.exit(1)
    console.print("[green]all checks passed[/]")
