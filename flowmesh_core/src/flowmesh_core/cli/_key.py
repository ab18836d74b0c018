"""``flowmesh key FILE``: an operator's op key and its items' keys, computed locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from flowmesh_core.cli._common import CliContext, console, pass_cli, reports_errors
from flowmesh_core.errors import InvalidInputError
from flowmesh_core.keys import Expansion, expand
from flowmesh_core.models import Operator
from flowmesh_core.models.parse import parse_document, parse_operator, parse_workflow
from flowmesh_core.registry import Registry

__all__ = ["key"]


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_document(text, str(path))


def _expansion_json(name: str | None, exp: Expansion) -> dict[str, Any]:
    return {
        "node": name,
        "op_key": exp.op_key,
        "kind": exp.kind,
        "version": exp.version,
        "signature": exp.signature,
        "items": [
            {"index": i.index, "sample": i.sample_index, "op_key": i.op_key} for i in exp.items
        ],
    }


def _print_table(rows: list[dict[str, Any]], waiting: dict[str, list[str]]) -> None:
    for row in rows:
        title = f"{row['node']}: " if row["node"] else ""
        console.print(f"[bold]{title}{row['kind']}[/] v{row['version']}")
        console.print(f"  op key     {row['op_key']}", soft_wrap=True)
        console.print(f"  signature  {row['signature']}", soft_wrap=True)
        if row["items"]:
            table = Table("  item", "sample", "op key", box=None, pad_edge=False)
            for item in row["items"]:
                sample = "" if item["sample"] is None else str(item["sample"])
                table.add_row(f"  {item['index']}", sample, item["op_key"])
            console.print(table)
    for node, refs in waiting.items():
        console.print(f"[bold]{node}[/]: key known once {', '.join(refs)} finish")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_cli
@reports_errors
def key(cli: CliContext, file: Path, as_json: bool) -> None:
    """Print the op key of the operator in FILE (YAML or JSON) and its items' keys.

    Equal keys mean the same result: FlowMesh runs such work once, for everyone. A
    workflow file prints a key per node whose inputs are all known already.
    """
    data = _read(file)
    registry = Registry.default()
    limit = cli.settings.max_inline_bytes

    def load_blob(digest: str) -> Any:
        return json.loads(cli.blob_store().get_bytes(digest))

    ops: list[tuple[str | None, Operator]] = []
    waiting: dict[str, list[str]] = {}
    if isinstance(data, dict) and "nodes" in data:
        workflow = parse_workflow(data)
        for name in workflow.topological_order():
            node = workflow.nodes[name]
            if node.dependencies():
                waiting[name] = node.dependencies()
            else:
                ops.append((name, node.to_operator({})))
    else:
        ops.append((None, parse_operator(data)))
    rows = [
        _expansion_json(name, expand(op, registry, max_inline_bytes=limit, load_blob=load_blob))
        for name, op in ops
    ]
    if as_json:
        click.echo(json.dumps(rows if len(rows) != 1 or waiting else rows[0], indent=2))
    else:
        _print_table(rows, waiting)
