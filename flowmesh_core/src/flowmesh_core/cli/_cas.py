"""``flowmesh cas put|get``: move blobs in and out of the content-addressable store."""

from __future__ import annotations

import mimetypes
import sys
from pathlib import Path

import click

from flowmesh_core.blobs import PutResult
from flowmesh_core.cli._common import CliContext, err_console, pass_cli, reports_errors, run_async
from flowmesh_core.errors import InvalidInputError

__all__ = ["cas"]


@click.group()
def cas() -> None:
    """Put blobs into the content-addressable store and get them back by digest."""


@cas.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--media-type", default=None, help="Media type to record (default: guessed from the name)."
)
@pass_cli
@reports_errors
def put(cli: CliContext, file: Path, media_type: str | None) -> None:
    """Store FILE ('-' for stdin) and print its digest. Storing it again is a no-op."""
    blobs = cli.blob_store()
    if str(file) == "-":
        result = blobs.put_stream(sys.stdin.buffer)
    else:
        if not file.is_file():
            raise InvalidInputError(f"{file} is not a readable file")
        result = blobs.put_file(file)
    guessed = mimetypes.guess_type(file.name)[0] if str(file) != "-" else None
    run_async(_index(cli, result, media_type or guessed or "application/octet-stream"))
    click.echo(result.digest)
    state = "stored" if result.created else "already present"
    err_console.print(f"{state}: {result.size:,} bytes in {blobs.url}", highlight=False)


async def _index(cli: CliContext, result: PutResult, media_type: str) -> None:
    store = cli.store()
    try:
        await store.record_blob(result.digest, result.size, media_type)
    finally:
        await store.aclose()


@cas.command()
@click.argument("digest")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file (written only once the bytes are verified).",
)
@pass_cli
@reports_errors
def get(cli: CliContext, digest: str, output: Path | None) -> None:
    """Print the blob DIGEST to stdout, or write it to --output, verifying its bytes.

    On stdout the bytes stream as they are read; a corrupt blob is detected at its end,
    so the command then fails (exit 2) after partial output. Use --output to get either
    the whole verified blob or nothing.
    """
    blobs = cli.blob_store()
    if output is not None:
        info = blobs.get_to_file(digest, output)
        err_console.print(f"wrote {info.size:,} bytes to {output}", highlight=False)
        return
    out = sys.stdout.buffer
    for chunk in blobs.iter_chunks(digest):
        out.write(chunk)
    out.flush()
