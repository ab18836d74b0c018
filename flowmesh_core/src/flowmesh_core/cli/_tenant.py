"""``flowmesh tenant create|rotate|revoke|quota``: register a tenant and print its token,
once; replace its token; stop all its tokens; change its own quotas.

The token goes alone to stdout (so ``flowmesh tenant create team-a > team-a.token`` keeps
it out of the terminal), or with ``--token-file PATH`` into a new file only its owner may
read (0600), for an install script to hand to ``helm --set-file`` (docs/deploy.md); how
to use it goes to stderr. Only the token's hash is stored:
it cannot be shown again. Rotation stops every earlier token at once, with no grace
period (docs/isolation.md, "Tokens").

This command must never create a tenant in the embedded store: it would vanish when the
command exits, and the token would open nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from rich.text import Text

from flowmesh_core.cli._common import CliContext, err_console, pass_cli, reports_errors, run_async
from flowmesh_core.control import (
    Tenant,
    create_tenant,
    revoke_tenant,
    rotate_token,
    set_quotas,
)
from flowmesh_core.errors import InvalidInputError

__all__ = ["tenant"]

_T = TypeVar("_T")


@click.group()
def tenant() -> None:
    """Manage tenants (the teams that submit work, each with its own token)."""


async def _create(cli: CliContext, tenant: Tenant) -> tuple[str, Tenant]:
    store = cli.store()
    try:
        created, token = await create_tenant(
            store,
            tenant.name,
            organisation=tenant.organisation,
            admin=tenant.admin,
            max_in_flight=tenant.max_in_flight,
            submit_rate=tenant.submit_rate,
        )
        return token, created
    finally:
        await store.aclose()


def _tenant(**fields: object) -> Tenant:
    try:
        return Tenant.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"invalid tenant: {problems.replace('Value error, ', '')}") from exc


def _claim(path: Path | None) -> int | None:
    """A new file at ``path``, open for writing by its owner only (0600), or None.

    Claimed before the tenant is made, so a path that cannot be written changes nothing;
    an existing file is never overwritten (it may hold another tenant's token).
    """
    if path is None:
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInputError(
            f"--token-file {path}: the file exists; remove it or name a new one"
        ) from None
    except OSError as exc:
        raise InvalidInputError(f"--token-file {path}: {exc.strerror}") from None


def _write_token(fd: int, token: str) -> None:
    """Write ``token`` and a newline into ``fd`` and fsync it, so a full disk shows here."""
    data = (token + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]
    os.fsync(fd)


def _deliver(name: str, token: str, path: Path | None, fd: int | None) -> str:
    """Write ``token`` to the claimed file (or stdout); the hint for stderr.

    The token is already live (and on rotation the old ones already stopped), so a file
    that cannot be written is removed and the error says how to get a working token."""
    if fd is None:
        click.echo(token)
        return "Its token (on stdout) is not stored and will not be shown again; save it now."
    try:
        _write_token(fd, token)
    except OSError as exc:
        os.unlink(path)  # type: ignore[arg-type]
        raise InvalidInputError(
            f"--token-file {path}: could not write the token ({exc.strerror}); the file was "
            f"removed and the token is lost. Run `flowmesh tenant rotate {name} --token-file "
            "PATH` again with a path that can be written to get a working token"
        ) from None
    finally:
        os.close(fd)
    return f"Its token is in {path} (mode 0600) and is not stored anywhere else."


def _issue(
    name: str, path: Path | None, make: Callable[[], Coroutine[Any, Any, tuple[str, _T]]]
) -> tuple[_T, str]:
    """Run ``make`` (a new token for tenant ``name`` and what else it returns) with
    ``path`` claimed first, deliver the token; what else ``make`` returned and the hint
    for stderr. A failure leaves no token file behind."""
    fd = _claim(path)
    try:
        token, extra = run_async(make())
    except BaseException:
        if fd is not None:
            os.close(fd)
            os.unlink(path)  # type: ignore[arg-type]
        raise
    return extra, _deliver(name, token, path, fd)


_TOKEN_FILE = click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the token to this new file (mode 0600) instead of stdout.",
)


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
@_TOKEN_FILE
@pass_cli
@reports_errors
def create(
    cli: CliContext,
    name: str,
    organisation: str | None,
    admin: bool,
    max_in_flight: int | None,
    submit_rate: float | None,
    token_file: Path | None,
) -> None:
    """Create tenant NAME and print its token (shown once), or write it to --token-file."""
    wanted = _tenant(
        name=name,
        organisation=organisation,
        admin=admin,
        max_in_flight=max_in_flight,
        submit_rate=submit_rate,
    )
    created, hint = _issue(wanted.name, token_file, lambda: _create(cli, wanted))
    kind = "admin tenant" if created.admin else "tenant"
    err_console.print(
        Text.assemble(
            (f"created {kind} {created.name!r}. ", "bold green"),
            f"{hint} Use it with: export FLOWMESH_TOKEN=<token>",
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
@_TOKEN_FILE
@pass_cli
@reports_errors
def rotate(cli: CliContext, name: str, token_file: Path | None) -> None:
    """Give tenant NAME a new token (printed once, or written to --token-file); its
    earlier tokens stop at once."""
    gone, hint = _issue(name, token_file, lambda: _rotate(cli, name))
    err_console.print(
        Text.assemble(
            (f"rotated the token of {name!r}: ", "bold green"),
            f"{gone} earlier token(s) stopped working now. {hint.replace('Its', 'The new')}",
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


def _quota_value(option: str, text: str | None, kind: type[int] | type[float]) -> object:
    """``text`` as a quota: ``default`` is None (the setting's), else a number."""
    if text is None:
        return _KEEP
    if text.strip().lower() == "default":
        return None
    try:
        return kind(text)
    except ValueError:
        raise InvalidInputError(
            f"{option} {text!r}: give a number (0: no limit) or 'default' (the setting's)"
        ) from None


_KEEP = object()


async def _quota(cli: CliContext, name: str, changes: dict[str, object]) -> Tenant:
    store = cli.store()
    try:
        if changes:
            return await set_quotas(store, name, **changes)  # type: ignore[arg-type]
        return await set_quotas(store, name)
    finally:
        await store.aclose()


@tenant.command("quota")
@click.argument("name")
@click.option("--max-in-flight", metavar="N|default", help="Items it may have in flight.")
@click.option("--submit-rate", metavar="R|default", help="Submissions per second.")
@pass_cli
@reports_errors
def quota(cli: CliContext, name: str, max_in_flight: str | None, submit_rate: str | None) -> None:
    """Show or change tenant NAME's own quotas (0: no limit; 'default': the setting's).

    A change applies from its next request; work already admitted is not touched.
    """
    values = {
        "max_in_flight": _quota_value("--max-in-flight", max_in_flight, int),
        "submit_rate": _quota_value("--submit-rate", submit_rate, float),
    }
    changes = {k: v for k, v in values.items() if v is not _KEEP}
    now = run_async(_quota(cli, name, changes))

    def shown(value: float | None, setting: str) -> str:
        return f"the setting's ({setting})" if value is None else f"{value:g}"

    click.echo(f"max_in_flight: {shown(now.max_in_flight, 'tenant_max_in_flight')}")
    click.echo(f"submit_rate: {shown(now.submit_rate, 'tenant_submit_rate')}")
