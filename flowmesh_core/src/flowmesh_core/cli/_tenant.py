"""``flowmesh tenant create``: register a tenant and print its token, once.

The token goes alone to stdout (so ``flowmesh tenant create team-a > team-a.token`` keeps
it out of the terminal); how to use it goes to stderr. Only the token's hash is stored:
it cannot be shown again.

This command must never create a tenant in the embedded store: it would vanish when the
command exits, and the token would open nothing.
"""

from __future__ import annotations

import click
from pydantic import ValidationError
from rich.text import Text

from flowmesh_core.cli._common import CliContext, err_console, pass_cli, reports_errors, run_async
from flowmesh_core.control import Tenant, create_tenant
from flowmesh_core.errors import InvalidInputError

__all__ = ["tenant"]


@click.group()
def tenant() -> None:
    """Manage tenants (the teams that submit work, each with its own token)."""


async def _create(
    cli: CliContext, name: str, organisation: str | None, admin: bool
) -> tuple[Tenant, str]:
    try:
        Tenant(name=name, organisation=organisation, admin=admin)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"invalid tenant: {problems.replace('Value error, ', '')}") from exc
    store = cli.store()
    try:
        return await create_tenant(store, name, organisation=organisation, admin=admin)
    finally:
        await store.aclose()


@tenant.command("create")
@click.argument("name")
@click.option("--org", "organisation", help="Organisation (for the organisation dedup domain).")
@click.option("--admin", is_flag=True, help="May see cluster-wide views (workers, all stats).")
@pass_cli
@reports_errors
def create(cli: CliContext, name: str, organisation: str | None, admin: bool) -> None:
    """Create tenant NAME and print its token (shown once)."""
    created, token = run_async(_create(cli, name, organisation, admin))
    click.echo(token)
    kind = "admin tenant" if created.admin else "tenant"
    err_console.print(
        Text.assemble(
            (f"created {kind} {created.name!r}. ", "bold green"),
            "Its token (on stdout) is not stored and will not be shown again; save it now. "
            "Use it with: export FLOWMESH_TOKEN=<token>",
        )
    )
