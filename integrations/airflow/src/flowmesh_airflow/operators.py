"""``FlowMeshOperator``: one Airflow task that runs a FlowMesh operator or small workflow.

``execute`` submits (or, on a retry, re-attaches to what an earlier try submitted; see
``_submission``), then either finishes at once (the result was cached, or an earlier try's
workflow is done), defers to ``FlowMeshTrigger`` (the default), or waits with the blocking
client (``deferrable=False``). ``execute_complete`` turns the trigger's event into the
XCom reference or an AirflowException carrying FlowMesh's message.

The operator translates and waits; it must never decide anything FlowMesh's control plane
decides (placement, batching, retries of items), and never put a result's bytes in XCom.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException
from pydantic import BaseModel

from flowmesh_airflow import _lineage, _outcome
from flowmesh_airflow._submission import Submission, idempotency_key, submit
from flowmesh_airflow.hooks import FlowMeshHook
from flowmesh_airflow.links import XCOM_KEY, FlowMeshWorkflowLink, workflow_url
from flowmesh_airflow.triggers import POLL_SLICE_S, UNAVAILABLE_PATIENCE_S, FlowMeshTrigger
from flowmesh_core.client import Client
from flowmesh_core.errors import (
    AuthenticationError,
    ConfigError,
    FlowMeshError,
    ServiceUnavailableError,
)
from flowmesh_core.models import Operator, Workflow

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

__all__ = ["FlowMeshOperator"]

DEFAULT_TIMEOUT = timedelta(hours=24)
DEFER_GRACE = timedelta(minutes=5)
"""Airflow's own deferral timeout, past the trigger's deadline: a safety net only."""

Spec = Operator | Workflow | Mapping[str, Any] | str


def plain_spec(spec: Spec | None) -> dict[str, Any] | str | None:
    """A spec as JSON-shaped data, so Jinja reaches every string inside it."""
    if isinstance(spec, BaseModel):
        plain: dict[str, Any] = json.loads(spec.model_dump_json())
        return plain
    if isinstance(spec, Mapping):
        return dict(spec)
    return spec


class FlowMeshOperator(BaseOperator):
    """Submit a FlowMesh ``operator`` or ``workflow`` and wait for it, deferred by default.

    :param operator: one operator: a ``flowmesh_core.models.Operator`` or a mapping
        (``kind``, ``model``, ``params``, ``inputs``...). Templated.
    :param workflow: a small workflow instead: a ``Workflow``, a mapping, or YAML text.
        Templated. Give exactly one of ``operator`` and ``workflow``.
    :param output_node: the workflow node whose result the XCom reference points at
        (default: the workflow's last node). Templated.
    :param flowmesh_conn_id: the Airflow connection (type ``flowmesh``) to use. Templated.
    :param deferrable: wait in the triggerer (True) or in this worker slot (False);
        default: ``[operators] default_deferrable`` of the Airflow configuration.
    :param timeout: how long to wait for the workflow (seconds or timedelta, default 24
        h). Past it the task fails; the work goes on in FlowMesh and a retry re-attaches.

    The XCom return value is a reference: ``workflow_id``, ``node``, ``op_key``,
    ``result_digest``, ``satisfied_by`` (executed / cache_hit / joined / mixed) and
    ``items`` counts; ``nodes`` lists every node's for a workflow of several nodes.

    Lineage: the "FlowMesh workflow" extra link opens the workflow in FlowMesh's
    dashboard; with the OpenLineage provider installed, the task's events carry its input
    and output digests and a ``flowmesh`` run facet; ``Asset`` outlets get the result in
    their event's extra, ``AssetAlias`` outlets one ``flowmesh://`` Asset per result
    digest (docs/airflow.md, "Lineage").
    """

    template_fields: Sequence[str] = ("operator", "workflow", "output_node", "flowmesh_conn_id")
    template_fields_renderers: ClassVar[dict[str, str]] = {"operator": "json", "workflow": "json"}
    operator_extra_links = (FlowMeshWorkflowLink(),)
    ui_color = "#d7ecf7"

    def __init__(
        self,
        *,
        operator: Spec | None = None,
        workflow: Spec | None = None,
        output_node: str | None = None,
        flowmesh_conn_id: str = FlowMeshHook.default_conn_name,
        deferrable: bool | None = None,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if operator is not None and workflow is not None:
            raise ValueError(f"{self.task_id}: give either operator= or workflow=, not both")
        self.operator = plain_spec(operator)
        self.workflow = plain_spec(workflow)
        self.output_node = output_node
        self.flowmesh_conn_id = flowmesh_conn_id
        # None follows the deployment's setting, as Airflow's own deferrable operators do.
        self.deferrable = (
            conf.getboolean("operators", "default_deferrable", fallback=False)
            if deferrable is None
            else deferrable
        )
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        if not seconds > 0:
            raise ValueError(f"{self.task_id}: timeout must be positive, got {timeout!r}")
        self.timeout = seconds
        self._server_url: str | None = None
        self._reference: dict[str, Any] | None = None
        self._workflow_id: str | None = None  # while this instance waits, for on_kill

    # -- running ----------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        document, is_workflow = self._document()
        ti = context["ti"]
        map_index = -1 if ti.map_index is None else ti.map_index
        key = idempotency_key(ti.dag_id, ti.run_id, ti.task_id, map_index)
        hook = FlowMeshHook(self.flowmesh_conn_id)
        with client_errors(self.flowmesh_conn_id), hook.get_conn() as client:
            sub = submit(client, document, workflow=is_workflow, key=key, log=self.log.info)
            node = self._node(sub)
            self._log_plan(sub)
            self._server_url = client.url
            self._workflow_id = sub.result.workflow_id
            ti.xcom_push(key=XCOM_KEY, value=workflow_url(client.url, sub.result.workflow_id))
            deadline = time.time() + self.timeout
            if sub.status.state in _outcome.TERMINAL:
                return self._finish_now(context, client, sub.result.workflow_id, node)
            if not self.deferrable:
                event = self._wait_blocking(client, sub, node, deadline)
                return self._completed(context, _outcome.finish(event))
        self.log.info(
            "Deferring to FlowMeshTrigger until workflow %s finishes (deadline %s)",
            sub.result.workflow_id,
            datetime.fromtimestamp(deadline, tz=UTC).isoformat(timespec="seconds"),
        )
        self.defer(
            trigger=FlowMeshTrigger(
                workflow_id=sub.result.workflow_id,
                node=node,
                deadline=deadline,
                timeout_s=self.timeout,
                flowmesh_conn_id=self.flowmesh_conn_id,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFER_GRACE,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: the XCom reference, or raise FlowMesh's error."""
        self.log.info(
            "FlowMesh event for workflow %s: %s", event.get("workflow_id"), event.get("status")
        )
        reference = _outcome.finish(event)
        self._log_reference(reference)
        return self._completed(context, reference)

    def on_kill(self) -> None:
        """Cancel this task's FlowMesh workflow when Airflow kills the task (marked failed
        or cleared while it waits in the worker, ``deferrable=False``).

        Only this task's request is cancelled: items another requester also waits for go
        on for them (docs/isolation.md, "Cancelling"). A deferred task waits in the
        triggerer, where Airflow gives no kill signal; cancel such a workflow with
        ``flowmesh cancel ID`` or the SDK's ``cancel_workflow``.
        """
        workflow_id = self._workflow_id
        if workflow_id is None:
            return
        try:
            with FlowMeshHook(self.flowmesh_conn_id).get_conn() as client:
                status = client.cancel_workflow(workflow_id)
        except FlowMeshError as exc:  # the kill goes on; say why FlowMesh was not told
            self.log.warning("Could not cancel FlowMesh workflow %s: %s", workflow_id, exc)
            return
        self.log.info("Cancelled FlowMesh workflow %s (now %s)", workflow_id, status.state)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """OpenLineage's view of the finished task: input and output digests as datasets,
        and how FlowMesh satisfied the work (the ``flowmesh`` run facet)."""
        if self._reference is None or self._server_url is None:
            return None
        document = self.workflow if self.workflow is not None else self.operator
        url = workflow_url(self._server_url, self._reference["workflow_id"])
        return _lineage.operator_lineage(self._server_url, document, self._reference, url)

    # -- helpers ----------------------------------------------------------------------

    def _document(self) -> tuple[Mapping[str, Any] | str, bool]:
        if self.workflow is not None:
            return self.workflow, True
        if self.operator is not None:
            return self.operator, False
        raise AirflowException(f"{self.task_id}: nothing to submit; give operator= or workflow=")

    def _node(self, sub: Submission) -> str:
        names = [plan.node for plan in sub.result.nodes]
        node = self.output_node or names[-1]
        if node not in names:
            raise AirflowException(
                f"{self.task_id}: output_node {node!r} is not a node of the workflow "
                f"(nodes: {', '.join(names)})"
            )
        return node

    def _finish_now(
        self, context: Context, client: Client, workflow_id: str, node: str
    ) -> dict[str, Any]:
        status = client.status(workflow_id, lineage=True)
        reference = _outcome.finish(_outcome.outcome(status, node))
        self._log_reference(reference)
        return self._completed(context, reference)

    def _completed(self, context: Context, reference: dict[str, Any]) -> dict[str, Any]:
        """Keep the reference for OpenLineage and describe it on the Asset outlets."""
        if self._server_url is None:  # resumed after deferral: a new operator instance
            self._server_url = FlowMeshHook(self.flowmesh_conn_id).get_settings().url
        self._reference = reference
        if self.outlets:
            _lineage.emit_assets(
                self.outlets, context["outlet_events"], self._server_url, reference
            )
        return reference

    def _wait_blocking(
        self, client: Client, sub: Submission, node: str, deadline: float
    ) -> dict[str, Any]:
        """The blocking twin of FlowMeshTrigger's wait: the same events, the sync client."""
        workflow_id = sub.result.workflow_id
        unavailable_since: float | None = None
        while True:
            remaining = deadline - time.time()
            try:
                last = client.wait(
                    workflow_id, timeout=max(0.0, min(remaining, POLL_SLICE_S)), lineage=True
                )
            except ServiceUnavailableError as exc:
                unavailable_since = unavailable_since or time.monotonic()
                if remaining <= 0 or time.monotonic() - unavailable_since > UNAVAILABLE_PATIENCE_S:
                    return _outcome.error_event(workflow_id, str(exc))
                self.log.warning("FlowMesh unavailable, retrying: %s", exc)
                time.sleep(min(5.0, remaining))
                continue
            unavailable_since = None
            self.log.info("FlowMesh workflow %s %s", workflow_id, _outcome.summary(last))
            if last.state in _outcome.TERMINAL:
                return _outcome.outcome(client.status(workflow_id, lineage=True), node)
            if remaining <= 0:
                return _outcome.timeout_event(workflow_id, self.timeout, last)

    def _log_plan(self, sub: Submission) -> None:
        how = "re-attached to the earlier try's" if sub.result.replayed else "submitted"
        self.log.info(
            "FlowMesh: %s workflow %s (idempotency key %s)", how, sub.result.workflow_id, sub.key
        )
        for plan in sub.result.nodes:
            self.log.info(
                "  node %s: %s, op key %s, %d items (%d cache hits, %d joined, %d created)",
                plan.node,
                plan.state,
                plan.op_key,
                plan.items,
                plan.cache_hits,
                plan.joined,
                plan.created,
            )

    def _log_reference(self, reference: Mapping[str, Any]) -> None:
        self.log.info(
            "FlowMesh workflow %s done: node %s result %s (%s)",
            reference["workflow_id"],
            reference["node"],
            reference["result_digest"],
            reference["satisfied_by"],
        )


@contextmanager
def client_errors(conn_id: str) -> Iterator[None]:
    """Re-raise the client's errors as AirflowException: a problem with the server or
    the token names the Airflow connection it came from (not FLOWMESH_SERVER_URL); a
    rejection of the work itself (params, inputs) says so and names no connection."""
    try:
        yield
    except (ConfigError, AuthenticationError, ServiceUnavailableError) as exc:
        message = str(exc).replace(
            "Check FLOWMESH_SERVER_URL (or --server-url / url=)",
            f"Check the host of Airflow connection {conn_id!r}",
        )
        raise AirflowException(f"Airflow connection {conn_id!r}: {message}") from exc
    except FlowMeshError as exc:
        raise AirflowException(f"FlowMesh refused the request: {exc}") from exc
