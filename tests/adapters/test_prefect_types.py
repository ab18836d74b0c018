"""The Prefect decorator's types, as a user's type checker sees them.

The examples of docs/prefect.md (and the package's README, and examples/prefect/) that
define FlowMesh tasks are extracted and checked with ``mypy --strict``, with a probe that
asserts what a call returns: the function's return annotation (sync), an awaitable of it
(async). A decorator typed ``Task[..., Any]``, or an example whose body mypy reads as a
missing return, fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.procs import ROOT

DOC = ROOT / "docs" / "prefect.md"

PROBE = '''
from typing import assert_type

from prefect import flow

from flowmesh_prefect import FlowMeshRef, computed_on_flowmesh, flowmesh_task


@flowmesh_task(kind="embed", model="m")
def embed(texts: list[str]) -> list[list[float]]:
    """Sync."""
    return computed_on_flowmesh()


@flowmesh_task(kind="embed", model="m", returns="reference")
def embed_ref(texts: list[str]) -> FlowMeshRef:
    """By reference."""
    return computed_on_flowmesh()


@flowmesh_task(kind="embed", model="m")
async def aembed(texts: list[str]) -> list[list[float]]:
    """Async."""
    return computed_on_flowmesh()


@flow
def sync_flow() -> None:
    assert_type(embed(["a"]), list[list[float]])
    assert_type(embed_ref(["a"]), FlowMeshRef)
    assert_type(embed.submit(["a"]).result(), list[list[float]])


@flow
async def async_flow() -> None:
    assert_type(await aembed(["a"]), list[list[float]])
'''


def _examples() -> list[str]:
    """The typed examples of docs/prefect.md and the package's README, and the example
    flow of examples/prefect/."""
    blocks = [
        block
        for page in (DOC, ROOT / "integrations" / "prefect" / "README.md")
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    ]
    flow = (ROOT / "examples" / "prefect" / "post_training_flow.py").read_text()
    return [b for b in blocks if "computed_on_flowmesh" in b] + [flow]


@pytest.mark.timeout(300)
def test_the_documented_examples_and_the_call_types_pass_mypy_strict(tmp_path: Path) -> None:
    examples = _examples()
    assert len(examples) >= 5, "docs/prefect.md or the README lost their typed examples"
    files = []
    for n, source in enumerate([*examples, PROBE]):
        path = tmp_path / f"example_{n}.py"
        path.write_text(source)
        files.append(str(path))
    env = {
        **os.environ,
        "MYPYPATH": os.pathsep.join(
            str(ROOT / p) for p in ("integrations/prefect/src", "flowmesh_core/src")
        ),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config-file",
            os.devnull,
            *files,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
