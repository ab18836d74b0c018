"""The python blocks of the adapters' docs, each one run or marked with why it is not.

The line right before a python block of docs/airflow.md, docs/prefect.md,
docs/dagster.md, the README and integrations/prefect/README.md says what the tests do
with it (an HTML comment, so
readers never see it):

- ``<!-- test: run -->``: the block runs, for real, against a live FlowMesh inside its
  orchestrator (test_doc_examples.py for Prefect, Dagster and the README; Airflow's in
  the DAG file ``airflow_dags/dags/fm_docs.py``, run by test_airflow.py).
- ``<!-- test: run: STATEMENT -->``: the same, then ``STATEMENT`` runs in the block's
  namespace (a flow to call and what it must return, assets to materialize).
- ``<!-- test: not run: REASON -->``: a sketch or a placeholder, and why.

The blocks of one page run in order in one namespace, as a reader pasting them into one
file would run them, so a later block may use what an earlier one defined. This module
imports no orchestrator: the Airflow DAG file uses it too.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PAGES = {
    "airflow": ROOT / "docs" / "airflow.md",
    "prefect": ROOT / "docs" / "prefect.md",
    "dagster": ROOT / "docs" / "dagster.md",
    "readme": ROOT / "README.md",
    "prefect-readme": ROOT / "integrations" / "prefect" / "README.md",  # the package's page
}
_MARK = re.compile(r"<!-- test: (run|not run)(?:: (.*?))? -->")


@dataclass(frozen=True)
class Example:
    """One python block: where it is, what its marker says, and its code."""

    page: str
    line: int  # of the opening fence, 1-based
    marker: str | None  # "run", "not run", or None when the line before is no marker
    note: str  # the statement to run after it, or why it is not run
    source: str

    @property
    def where(self) -> str:
        return f"{PAGES[self.page].relative_to(ROOT)}:{self.line}"


def examples(page: str) -> list[Example]:
    """The python blocks of ``page`` (a key of PAGES), in order."""
    lines = PAGES[page].read_text().splitlines()
    found = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```python":
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        mark = _MARK.fullmatch(lines[index - 1].strip()) if index else None
        found.append(
            Example(
                page,
                index + 1,
                mark.group(1) if mark else None,
                (mark.group(2) or "").strip() if mark else "",
                "\n".join(lines[index + 1 : end]) + "\n",
            )
        )
        index = end + 1
    return found


def run_page(page: str, namespace: MutableMapping[str, Any]) -> list[Example]:
    """Run ``page``'s runnable blocks (and their markers' statements) in ``namespace``,
    in order; the blocks that ran. An exception names the block it came from."""
    ran = []
    for example in examples(page):
        if example.marker != "run":
            continue
        _run(example.source, example.where, namespace)
        if example.note:
            _run(example.note, f"{example.where} (marker)", namespace)
        ran.append(example)
    return ran


def _run(source: str, name: str, namespace: MutableMapping[str, Any]) -> None:
    # dont_inherit: a block is compiled as its reader's file would be, without this
    # module's ``from __future__ import annotations`` (Dagster reads annotations as types).
    code = compile(source, name, "exec", dont_inherit=True)
    exec(code, namespace)  # noqa: S102
