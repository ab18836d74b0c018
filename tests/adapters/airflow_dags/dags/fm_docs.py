"""The DAGs of docs/airflow.md and examples/airflow/, for test_airflow.py to run.

With ``FM_DOC_EXAMPLES`` set, the blocks docs/airflow.md marks ``<!-- test: run -->``
run here in order, in one namespace (``tests/adapters/doc_examples.py``), inside the DAG
``docs_airflow`` (a block that makes a DAG of its own, like ``embed_docs``, makes it), from
the repository root (a block may read a file of the repository by a relative path). The
example DAG ``flowmesh_post_training`` is loaded from its file as Airflow would load it.
Unset, this file defines nothing.
"""

from __future__ import annotations

import contextlib
import os
import runpy
from datetime import datetime
from typing import Any

from airflow.sdk import DAG

from tests.adapters.doc_examples import ROOT, run_page

if os.environ.get("FM_DOC_EXAMPLES"):
    namespace: dict[str, Any] = {"__name__": "docs_airflow"}
    with (
        contextlib.chdir(ROOT),
        DAG("docs_airflow", schedule=None, start_date=datetime(2026, 1, 1), catchup=False),
    ):
        run_page("airflow", namespace)
    example = runpy.run_path(str(ROOT / "examples" / "airflow" / "post_training_dag.py"))
