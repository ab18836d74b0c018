"""The cross-orchestrator test's DAG: one FlowMeshOperator running the operator given
(as JSON) in ``$FM_ACROSS_OPERATOR``; absent, the DAG is not defined."""

from __future__ import annotations

import json
import os
from datetime import datetime

from airflow.sdk import DAG

from flowmesh_airflow import FlowMeshOperator

_SPEC = os.environ.get("FM_ACROSS_OPERATOR")

if _SPEC:
    with DAG("fm_across", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        FlowMeshOperator(task_id="shared", operator=json.loads(_SPEC))
