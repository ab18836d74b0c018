"""One Airflow DAG run of ``fm_across`` (one FlowMeshOperator on the operator given), in
its own process and AIRFLOW_HOME (``airflow_dags/run.py``), for tests outside
test_airflow.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.adapters.conftest import Live
from tests.integration.procs import ROOT

DAGS = Path(__file__).with_name("airflow_dags")


def run_across(
    live: Live, token: str, spec: dict[str, Any], tmp: Path, **env_vars: str
) -> tuple[dict[str, Any], str]:
    """Run ``fm_across`` on ``spec`` as ``token``'s tenant (``env_vars`` added to the
    runner's environment); the DAG's record and the runner's output. Fails the test when
    the runner fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWMESH_", "AIRFLOW"))}
    env.update(
        PYTHONPATH=str(ROOT),
        AIRFLOW_HOME=str(tmp / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp / 'airflow' / 'airflow.db'}",
        AIRFLOW_CONN_FLOWMESH_DEFAULT=json.dumps(
            {"conn_type": "flowmesh", "host": live.url, "password": token}
        ),
        FM_ACROSS_OPERATOR=json.dumps(spec),
        **env_vars,
    )
    (tmp / "airflow").mkdir()
    report = tmp / "report.json"
    proc = subprocess.run(
        [sys.executable, str(DAGS / "run.py"), str(report), "fm_across"],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:] + live.logs()
    dag: dict[str, Any] = json.loads(report.read_text())["dags"]["fm_across"]
    return dag, output
