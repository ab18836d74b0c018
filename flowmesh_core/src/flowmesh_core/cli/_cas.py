"""``flowmesh cas put|get|grant|revoke|grants``: move blobs in and out of the CAS, and
share them, through the API, as a tenant.

All go through the control plane with the tenant's token (FLOWMESH_TOKEN, --token), so
they obey the same rights as every other read (docs/isolation.md): ``put`` makes the
tenant an owner of what it uploads, ``get`` reads only blobs the tenant uploaded, results
its lineage holds and blobs granted to it, ``grant`` lets another tenant read a blob the
tenant uploaded or made. This module must never open the blob store or Redis itself.
"""

from __future__ import annotations

import mimetypes
import sys
from pathlib import Path

import click

from flowmesh_core.cli._common import CliContext, err_console, pass_cli, reports_errors
from flowmesh_core.cli._inspect import open_client
from flowmesh_core.errors import InvalidInputError
from flowmesh_core.hashing import validate_digest

__all__ = ["cas"]


@click.group()
def cas() -> None:
    """Upload blobs to the content-addressable store and get them back by digest.

    Needs a tenant token (FLOWMESH_TOKEN or --token) and a running server
    (FLOWMESH_SERVER_URL). A blob is yours to read and to use as an operator input
    ({blob: DIGEST}) once you uploaded it; other tenants cannot see it unless you grant
    it to them (cas grant).
    """


@cas.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--media-type", default=None, help="Media type to record (default: guessed from the name)."
)
@pass_cli
@reports_errors
def put(cli: CliContext, file: Path, media_type: str | None) -> None:
    """Upload FILE ('-' for stdin) and print its digest. Uploading it again is a no-op.

    The server checks the bytes against their digest; FILE streams, whatever its size
    (up to the server's max_upload_bytes).
    """
    stdin = str(file) == "-"
    if not stdin and not file.is_file():
        raise InvalidInputError(f"{file} is not a readable file")
    guessed = None if stdin else mimetypes.guess_type(file.name)[0]
    with open_client(cli) as client:
        digest = client.put_blob(
            sys.stdin.buffer if stdin else file, media_type=media_type or guessed
        )
        url = client.url
    click.echo(digest)
    err_console.print(f"uploaded to {url}; use it as {{blob: {digest}}}", highlight=False)


@cas.command()
@click.argument("digest")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file (streamed; written only once the bytes are verified).",
)
@pass_cli
@reports_errors
def get(cli: CliContext, digest: str, output: Path | None) -> None:
    """Print the blob DIGEST to stdout, or write it to --output, verifying its bytes.

    DIGEST must be a blob you uploaded, a result of one of your workflows, or a blob
    another tenant granted you. Without
    --output the blob is read whole and verified before anything is printed; use
    --output for blobs too large to hold in memory.
    """
    validate_digest(digest)  # a malformed digest is refused before anything else
    with open_client(cli) as client:
        if output is not None:
            size = client.download_blob(digest, output)
            err_console.print(f"wrote {size:,} bytes to {output}", highlight=False)
            return
        data = client.get_blob(digest)
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


@cas.command()
@click.argument("digest")
@click.argument("tenant")
@pass_cli
@reports_errors
def grant(cli: CliContext, digest: str, tenant: str) -> None:
    """Let TENANT read the blob DIGEST and use it as an input ({blob: DIGEST}).

    DIGEST must be a blob you uploaded or a result of one of your workflows; a blob
    granted to you cannot be granted on. If DIGEST is a result manifest of your
    workflows, TENANT may also compute on the items it lists. The answer is the same
    whether or not TENANT exists. Undo it with `flowmesh cas revoke DIGEST TENANT`.
    """
    validate_digest(digest)
    with open_client(cli) as client:
        client.grant_blob(digest, tenant)
    err_console.print(f"{tenant} may read {digest}", highlight=False)


@cas.command()
@click.argument("digest")
@click.argument("tenant")
@pass_cli
@reports_errors
def revoke(cli: CliContext, digest: str, tenant: str) -> None:
    """Withdraw your grant of the blob DIGEST to TENANT (a no-op if there was none).

    TENANT keeps reading DIGEST if another tenant granted it too, or if TENANT uploaded
    it or made it itself. Work TENANT already submitted with it is not stopped.
    """
    validate_digest(digest)
    with open_client(cli) as client:
        client.revoke_blob_grant(digest, tenant)
    err_console.print(f"your grant of {digest} to {tenant} is withdrawn", highlight=False)


@cas.command()
@click.argument("digest", required=False)
@pass_cli
@reports_errors
def grants(cli: CliContext, digest: str | None) -> None:
    """List your grants of the blob DIGEST, one a line: GRANTEE<TAB>GRANTOR; without
    DIGEST, every grant you made, one a line: DIGEST<TAB>GRANTEE.

    Only your own grants are listed (GRANTOR is you), never other tenants'; with an
    admin token and a DIGEST, every tenant's grants of DIGEST. Without DIGEST, it lists
    what counts against your grant quota (max_grants_per_tenant): revoke with
    `flowmesh cas revoke DIGEST GRANTEE`.
    """
    with open_client(cli) as client:
        if digest is None:
            after: str | None = None
            while True:
                page = client.list_grants(after)
                for made in page.grants:
                    click.echo(f"{made.digest}\t{made.tenant}")
                if page.next is None:
                    return
                after = page.next
        for one in client.list_blob_grants(validate_digest(digest)):
            click.echo(f"{one.tenant}\t{one.grantor}")
