"""The ``flowmesh`` command line."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path

import click

from flowmesh_core import __version__
from flowmesh_core.cli._autoscale import autoscale_command
from flowmesh_core.cli._cas import cas
from flowmesh_core.cli._common import CliContext
from flowmesh_core.cli._doctor import doctor
from flowmesh_core.cli._inspect import lineage_command, stats_command, status_command
from flowmesh_core.cli._key import key
from flowmesh_core.cli._serve import serve
from flowmesh_core.cli._submit import cancel, submit
from flowmesh_core.cli._tenant import tenant

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowmesh")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML settings file (default: $FLOWMESH_CONFIG, else ./flowmesh.toml if present).",
)
@click.option("--redis-url", help="Override FLOWMESH_REDIS_URL (memory:// = embedded store).")
@click.option("--blob-url", help="Override FLOWMESH_BLOB_URL (file:///path or s3://bucket/prefix).")
@click.option("--server-url", help="Override FLOWMESH_SERVER_URL (the control plane's URL).")
@click.option("--token", help="Override FLOWMESH_TOKEN (prefer the variable: options show in ps).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, to stderr.")
@click.pass_context
def main(
    ctx: click.Context,
    config_file: Path | None,
    redis_url: str | None,
    blob_url: str | None,
    server_url: str | None,
    token: str | None,
    verbose: bool,
) -> None:
    """FlowMesh: one shared fabric for LLM workflows.

    Identical work from every tenant runs once (content-addressed op keys and an action
    cache in Redis), results live in a content-addressable store, and lineage tells each
    tenant how each of its items was satisfied.

    Settings come from --options, FLOWMESH_* variables and a TOML file, in that order.
    With no settings at all, everything runs embedded: an in-process Redis and blobs
    under ~/.local/share/flowmesh/blobs.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides = {
        "redis_url": redis_url,
        "blob_url": blob_url,
        "server_url": server_url,
        "token": token,
    }
    ctx.obj = CliContext(config_file, {k: v for k, v in overrides.items() if v is not None})


main.add_command(key)
main.add_command(cas)
main.add_command(doctor)
main.add_command(submit)
main.add_command(cancel)
main.add_command(status_command)
main.add_command(lineage_command)
main.add_command(stats_command)
main.add_command(serve)
main.add_command(tenant)
main.add_command(autoscale_command)


# Commands that live in other distributions (``flowmesh worker``, ``demo``, ``up`` and
# ``down`` come with flowmesh-worker), so this package never imports torch.
_PLUGIN_GROUP = "flowmesh.commands"
_PLUGIN_HOMES = {"worker": "flowmesh-worker", "demo": "flowmesh-worker"}
_PLUGIN_HOMES |= {"up": "flowmesh-worker", "down": "flowmesh-worker"}


def _missing(name: str, distribution: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise click.UsageError(
            f"`flowmesh {name}` comes with the {distribution} package, which is not "
            f"installed: pip install {distribution}"
        )

    command.help = f"(needs {distribution}: pip install {distribution})"
    return command


def _add_plugins() -> None:
    found = {ep.name: ep for ep in entry_points(group=_PLUGIN_GROUP)}
    for name in sorted(set(found) | set(_PLUGIN_HOMES)):
        if name in found:
            main.add_command(found[name].load(), name)
        else:
            main.add_command(_missing(name, _PLUGIN_HOMES[name]))


_add_plugins()
