"""``FlowMeshWorkflowSensor``: waits for a FlowMesh workflow that something else submitted.

Another DAG, a Prefect flow, a Dagster asset or the CLI submitted the workflow; this task
waits for it to end and pushes the same XCom reference ``FlowMeshOperator`` would (so
``FlowMeshHook.read`` reads its value). Deferrable like the operator (default: ``[operators]
default_deferrable``): it defers to ``FlowMeshTrigger``; otherwise it pokes. A workflow
that failed fails the sensor with FlowMesh's message; one the tenant cannot see fails it
like an unknown one (FlowMesh answers both alike).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from flowmesh_airflow import _outcome
from flowmesh_airflow.hooks import FlowMeshHook
from flowmesh_airflow.links import XCOM_KEY, FlowMeshWorkflowLink, workflow_url
from flowmesh_airflow.operators import DEFER_GRACE, client_errors
from flowmesh_airflow.triggers import FlowMeshTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

    from flowmesh_core.models.api import WorkflowStatus

__all__ = ["FlowMeshWorkflowSensor"]


class FlowMeshWorkflowSensor(BaseSensorOperator):
    """Wait until FlowMesh workflow ``workflow_id`` is done; its XCom is the reference.

    :param workflow_id: the workflow to watch (templated: e.g. pulled from XCom).
    :param output_node: the node the reference points at (default: the last). Templated.
    :param flowmesh_conn_id: the Airflow connection (type ``flowmesh``). Templated.
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.

    ``timeout`` (the sensor's own, seconds) bounds the wait; ``poke_interval`` is used only
    when not deferrable.
    """

    template_fields: Sequence[str] = ("workflow_id", "output_node", "flowmesh_conn_id")
    operator_extra_links = (FlowMeshWorkflowLink(),)
    ui_color = "#d7ecf7"

    def __init__(
        self,
        *,
        workflow_id: str,
        output_node: str | None = None,
        flowmesh_conn_id: str = FlowMeshHook.default_conn_name,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workflow_id = workflow_id
        self.output_node = output_node
        self.flowmesh_conn_id = flowmesh_conn_id
        self.deferrable = (
            conf.getboolean("operators", "default_deferrable", fallback=False)
            if deferrable is None
            else deferrable
        )

    def execute(self, context: Context) -> Any:
        status = self._status(context, lineage=False)
        if not self.deferrable or status.state in _outcome.TERMINAL:
            return super().execute(context)
        self.log.info("Deferring until FlowMesh workflow %s ends", self.workflow_id)
        self.defer(
            trigger=FlowMeshTrigger(
                workflow_id=self.workflow_id,
                node=self._node(status),
                deadline=time.time() + float(self.timeout),
                timeout_s=float(self.timeout),
                flowmesh_conn_id=self.flowmesh_conn_id,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) + DEFER_GRACE,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        status = self._status(context, lineage=True)
        self.log.info("FlowMesh workflow %s %s", self.workflow_id, _outcome.summary(status))
        if status.state not in _outcome.TERMINAL:
            return PokeReturnValue(is_done=False)
        reference = _outcome.finish(_outcome.outcome(status, self._node(status)))
        return PokeReturnValue(is_done=True, xcom_value=reference)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: the reference, or raise FlowMesh's error."""
        return _outcome.finish(event)

    def _status(self, context: Context, *, lineage: bool) -> WorkflowStatus:
        with (
            client_errors(self.flowmesh_conn_id),
            FlowMeshHook(self.flowmesh_conn_id).get_conn() as client,
        ):
            status = client.status(self.workflow_id, lineage=lineage)
            context["ti"].xcom_push(key=XCOM_KEY, value=workflow_url(client.url, self.workflow_id))
        return status

    def _node(self, status: WorkflowStatus) -> str:
        names = [node.node for node in status.nodes]
        node = self.output_node or names[-1]
        if node not in names:
            raise AirflowException(
                f"{self.task_id}: output_node {node!r} is not a node of workflow "
                f"{self.workflow_id} (nodes: {', '.join(names)})"
            )
        return node
