"""The adapters' docs and examples, run for real so they cannot be wrong again.

Every python block of docs/airflow.md, docs/prefect.md, docs/dagster.md, the README and
the Prefect package's README carries a marker (``tests/adapters/doc_examples.py``): it
runs, or it says why not. Here the Prefect pages' blocks run as flows under a temporary
Prefect server, the Dagster page's are materialized, and the README's client snippet
runs; each against the live FlowMesh of ``conftest.live`` (real ``flowmesh serve`` and
``flowmesh worker`` processes, real Redis), on the models the docs name (the tiny
random-weight ones every worker builds, and all-MiniLM-L6-v2). examples/prefect/ and
examples/dagster/ run the same way. docs/airflow.md's blocks and examples/airflow/ run
inside Airflow, in test_airflow.py (``test_the_documented_dags_and_the_example_run``).
"""

from __future__ import annotations

import gc
import re
import runpy
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from flowmesh_dagster import FlowMeshIOManager, FlowMeshResource
from flowmesh_prefect import FlowMeshCredentials
from tests.adapters.conftest import Live
from tests.adapters.doc_examples import PAGES, ROOT, examples, run_page

pytestmark = [pytest.mark.redis, pytest.mark.timeout(600)]

REPORT = re.compile(
    r"kept \d+ of 8 completions; \d+ embeddings at sha256:[0-9a-f]{64} "
    r"\(generate: \w+, embed: \w+\)"
)


@pytest.fixture(scope="module")
def token(live: Live) -> str:
    return live.tenant("docs")[1]


@pytest.fixture
def settings(live: Live, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the pages tell a reader to export (README, "A local cluster")."""
    monkeypatch.setenv("FLOWMESH_SERVER_URL", live.url)
    monkeypatch.setenv("FLOWMESH_TOKEN", token)


def test_every_python_block_runs_or_says_why_not() -> None:
    for page in PAGES:
        found = examples(page)
        unmarked = [e.where for e in found if e.marker is None]
        assert not unmarked, f"python blocks with no <!-- test: ... --> marker: {unmarked}"
        silent = [e.where for e in found if e.marker == "not run" and not e.note]
        assert not silent, f"blocks not run that do not say why: {silent}"
        assert any(e.marker == "run" for e in found), f"{page}: no block runs"


def test_each_adapter_page_links_the_kinds_reference() -> None:
    """Params and inputs are the kinds' (docs/kinds.md, generated from the registry):
    each adapter page sends its reader there rather than keep a copy that drifts."""
    for page in ("airflow", "prefect", "dagster"):
        assert "](kinds.md)" in PAGES[page].read_text(), page


# The page's async flow: Prefect 3.7's async flow engine leaves a sync API client of its
# own unclosed (see test_prefect.py's async test); ignored here only, and collected here.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
def test_the_prefect_page_runs(
    live: Live, token: str, settings: None, prefect_server: None
) -> None:
    # The page names a saved block "team-a"; a reader saves theirs as its first block shows.
    FlowMeshCredentials(server_url=live.url, token=token).save("team-a", overwrite=True)
    ran = run_page("prefect", {"__name__": "docs_prefect"})
    ran += run_page("prefect-readme", {"__name__": "prefect_readme"})
    gc.collect()
    assert len(ran) == 5


def test_the_prefect_example_runs(settings: None, prefect_server: None) -> None:
    example = runpy.run_path(str(ROOT / "examples" / "prefect" / "post_training_flow.py"))
    line = example["post_training"]()
    assert REPORT.fullmatch(line), line


def _materialize(live: Live, token: str) -> Any:
    """``materialize(*assets_and_checks)`` for the Dagster page's markers: a run on an
    ephemeral instance with the page's resources (``options``: ``partition_key``, ...),
    which must succeed, checks included."""

    def materialize(*definitions: Any, **options: Any) -> dg.ExecuteInProcessResult:
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(
                list(definitions),
                instance=instance,
                **options,
                resources={
                    "flowmesh": FlowMeshResource(server_url=live.url, token=token),
                    "io_manager": FlowMeshIOManager(server_url=live.url, token=token),
                },
            )
        assert result.success
        evaluations = result.get_asset_check_evaluations()
        assert all(e.passed for e in evaluations), evaluations
        return result

    return materialize


def test_the_dagster_page_runs(live: Live, token: str) -> None:
    ran = run_page(
        "dagster", {"__name__": "docs_dagster", "materialize": _materialize(live, token)}
    )
    assert len(ran) == 3


def test_the_dagster_example_runs(settings: None) -> None:
    defs = runpy.run_path(str(ROOT / "examples" / "dagster" / "definitions.py"))["defs"]
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(list(defs.assets), instance=instance, resources=defs.resources)
    assert result.success
    embeddings = result.output_for_node("embeddings")
    assert embeddings
    assert all(len(vector) == 384 for vector in embeddings)  # all-MiniLM-L6-v2's width


def test_the_readme_client_snippet_runs(
    settings: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rows.json").write_text('["first text", "second text"]')
    monkeypatch.chdir(tmp_path)
    ran = run_page("readme", {"__name__": "docs_readme"})
    assert len(ran) == 1
