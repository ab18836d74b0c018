"""The public API is explicit: each package's ``__all__`` is sorted, unique and importable.

Adding or removing a top-level name must be a deliberate change to EXPECTED_TOP_LEVEL.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "flowmesh_core",
    "flowmesh_core.models",
    "flowmesh_core.store",
    "flowmesh_core.blobs",
    "flowmesh_core.errors",
    "flowmesh_core.control",
    "flowmesh_core.client",
    "flowmesh_core.api",
]

EXPECTED_TOP_LEVEL = [
    "BlobStore",
    "DedupDomain",
    "Expansion",
    "FlowMeshError",
    "Item",
    "KindSpec",
    "LineageRecord",
    "ModelRef",
    "Operator",
    "Registry",
    "Requester",
    "Satisfaction",
    "Settings",
    "Store",
    "WorkerProfile",
    "Workflow",
    "__version__",
    "expand",
    "load_settings",
    "open_blob_store",
    "parse_document",
    "parse_operator",
    "parse_workflow",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_unique_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert isinstance(exported, list | tuple)
    assert exported, f"{name}.__all__ is empty"
    assert list(exported) == sorted(exported), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    missing = [attr for attr in exported if not hasattr(module, attr)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("name", PACKAGES)
def test_star_import_gives_exactly_all(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)  # noqa: S102 - the statement is fixed text
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(importlib.import_module(name).__all__)


def test_top_level_api_is_the_expected_list() -> None:
    import flowmesh_core

    assert list(flowmesh_core.__all__) == EXPECTED_TOP_LEVEL


def test_no_private_names_are_exported() -> None:
    for name in PACKAGES:
        exported = importlib.import_module(name).__all__
        assert not [a for a in exported if a.startswith("_") and a != "__version__"], name


def test_the_version_is_a_string() -> None:
    import flowmesh_core

    assert isinstance(flowmesh_core.__version__, str)
    assert flowmesh_core.__version__.count(".") >= 1


def test_importing_the_core_pulls_no_heavy_dependency() -> None:
    code = (
        "import flowmesh_core, sys; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'torch','airflow','prefect','dagster'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
