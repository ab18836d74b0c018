"""``FlowMeshWorkflowLink``: the task's button to its workflow in FlowMesh's dashboard.

The operator (and the sensor) push the workflow page's URL to XCom under ``XCOM_KEY`` as
soon as the workflow id is known, before waiting; Airflow's task runner then calls
``get_link`` when the task ends and stores the link for the UI. The page is the
dashboard's ``/ui`` route, ``#workflow/<id>`` (docs/ui.md); it asks for the tenant's
token itself, so the link carries none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["XCOM_KEY", "FlowMeshWorkflowLink", "workflow_url"]

XCOM_KEY = "flowmesh_workflow_url"


def workflow_url(server_url: str, workflow_id: str) -> str:
    """The dashboard page of ``workflow_id`` on the control plane at ``server_url``."""
    return f"{server_url.rstrip('/')}/ui/#workflow/{quote(workflow_id, safe='')}"


class FlowMeshWorkflowLink(BaseOperatorLink):
    """ "FlowMesh workflow": the dashboard page of the workflow the task submitted or watched."""

    name = "FlowMesh workflow"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value: Any = XCom.get_value(ti_key=ti_key, key=XCOM_KEY)
        return value if isinstance(value, str) else ""
