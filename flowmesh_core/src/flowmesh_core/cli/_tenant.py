"""``flowmesh tenant create|rotate|revoke``: register a tenant and print its token, once;
replace its token; stop all its tokens.

The token goes alone to stdout (so ``flowmesh tenant create team-a > team-a.token`` keeps
it out of the terminal); how to use it goes to stderr. Only the token's hash is stored:
it cannot be shown again. Rotation stops every earlier token at once, with no grace
period (docs/isolation.md, "Tokens").

This command must never create a tenant in the embedded store: it would vanish when the
command exits, and the token would open nothing.
"""

from __future__ import annotations

import click
from pydantic import ValidationError
from rich.text import Text

from flowmesh_core.cli._common import CliContext, err_console, pass_cli, reports_errors, run_async
from flowmesh_core.control import Tenant, create_tenant, revoke_tenant, rotate_token
from flowmesh_core.errors import InvalidInputError

__all__ = ["tenant"]


@click.group()
def tenant() -> None:
    """Manage tenants (the teams that submit work, each with its own token)."""


async def _create(cli: CliContext, tenant: Tenant) -> tuple[Tenant, str]:
    store = cli.store()
    try:
        return await create_tenant(
            store,
            tenant.name,
            organisation=tenant.organisation,
            admin=tenant.admin,
            max_in_flight=tenant.max_in_flight,
            submit_rate=tenant.submit_rate,
        )
    finally:
        await store.aclose()


def _tenant(**fields: object) -> Tenant:
    try:
        return Tenant.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"invalid tenant: {problems.replace('Value error, ', '')}") from exc


@tenant.command("create")
@click.argument("name")
@click.option("--org", "organisation", help="Organisation (for the organisation dedup domain).")
@click.option("--admin", is_flag=True, help="May see cluster-wide views (workers, all stats).")
@click.option(
    "--max-in-flight",
    type=int,
    help="Items it may have in flight (default: the tenant_max_in_flight setting; 0: no limit).",
)
@click.option(
    "--submit-rate",
    type=float,
    help="Submissions per second (default: the tenant_submit_rate setting; 0: no limit).",
)
@pass_cli
@reports_errors
def create(
    cli: CliContext,
    name: str,
    organisation: str | None,
    admin: bool,
    max_in_flight: int | None,
    submit_rate: float | None,
) -> None:
    """Create tenant NAME and print its token (shown once)."""
    wanted = _tenant(
        name=name,
        organisation=organisation,
        admin=admin,
        max_in_flight=max_in_flight,
        submit_rate=submit_rate,
    )
    created, token = run_async(_create(cli, wanted))
    click.echo(token)
    kind = "admin tenant" if created.admin else "tenant"
    err_console.print(
        Text.assemble(
            (f"created {kind} {created.name!r}. ", "bold green"),
            "Its token (on stdout) is not stored and will not be shown again; save it now. "
            "Use it with: export FLOWMESH_TOKEN=<token>",
        )
    )


async def _rotate(cli: CliContext, name: str) -> tuple[str, int]:
    store = cli.store()
    try:
        return await rotate_token(store, name)
    finally:
        await store.aclose()


async def _revoke(cli: CliContext, name: str) -> int:
    store = cli.store()
    try:
        return await revoke_tenant(store, name)
    finally:
        await store.aclose()


@tenant.command("rotate")
@click.argument("name")
@pass_cli
@reports_errors
def rotate(cli: CliContext, name: str) -> None:
    """Give tenant NAME a new token (printed once); its earlier tokens stop at once."""
    token, gone = run_async(_rotate(cli, name))
    click.echo(token)
    err_console.print(
        Text.assemble(
            (f"rotated the token of {name!r}: ", "bold green"),
            f"{gone} earlier token(s) stopped working now. The new one (on stdout) is not "
            "stored and will not be shown again; save it now.",
        )
    )


@tenant.command("revoke")
@click.argument("name")
@pass_cli
@reports_errors
def revoke(cli: CliContext, name: str) -> None:
    """Stop every token of tenant NAME at once; its workflows stay readable by an admin.

    `flowmesh tenant rotate NAME` gives it a working token again.
    """
    gone = run_async(_revoke(cli, name))
    err_console.print(
        Text.assemble(
            (f"revoked tenant {name!r}: ", "bold yellow"),
            f"{gone} token(s) stopped working. Its workflows and results are kept.",
        )
    )
