"""``FlowMeshResource``: run FlowMesh operators and workflows from Dagster assets and ops.

A thin binding over the client SDK: it submits (with an idempotency key made from the
run and step, so a step retry re-attaches instead of submitting twice), waits, loads the
result from the CAS, and turns lineage into Dagster metadata. A workflow that fails in
FlowMesh fails the step with FlowMesh's message; an unreachable control plane fails it
with the client's error, which names the URL it tried.

This module must never decide anything FlowMesh decides (batching, placement, dedup),
and never import the control plane: it speaks HTTP through ``flowmesh_core.client``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from flowmesh_core.client import Client, WorkflowStatus, progress_summary
from flowmesh_core.errors import FlowMeshError
from flowmesh_core.models import Operator, Workflow
from flowmesh_dagster import _work
from flowmesh_dagster._failures import as_failure
from flowmesh_dagster._lineage import NodeStatusLike, result_metadata, submission_metadata
from flowmesh_dagster._values import content_digest
from flowmesh_dagster._work import Context, op_context, parse_work
from flowmesh_dagster.results import FlowMeshResult, FlowMeshSubmission

__all__ = ["FlowMeshResource"]

WorkLike = Operator | Workflow | Mapping[str, Any] | str


class FlowMeshResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Submit FlowMesh work from assets and ops and get its result back with lineage.

    ``server_url`` and ``token`` default to FlowMesh's own settings (FLOWMESH_SERVER_URL,
    FLOWMESH_TOKEN, flowmesh.toml). Give the token as ``dg.EnvVar("FLOWMESH_TOKEN")``:
    Dagster then reads it when the run starts and never shows its value in the UI.

        @dg.asset(io_manager_key="flowmesh_io")
        def completions(context: dg.AssetExecutionContext, flowmesh: FlowMeshResource):
            return flowmesh.run(context, {"kind": "llm.generate", ...}).output()
    """

    server_url: str | None = Field(
        default=None,
        description="The FlowMesh control plane, e.g. http://127.0.0.1:8470 "
        "(default: FLOWMESH_SERVER_URL or flowmesh.toml).",
    )
    token: str | None = Field(
        default=None,
        repr=False,
        description="This tenant's token; use EnvVar('FLOWMESH_TOKEN') so the UI never shows "
        "it (default: FLOWMESH_TOKEN or flowmesh.toml).",
    )
    wait_timeout_s: float | None = Field(
        default=None,
        description="Longest wait for a workflow to finish, in seconds; the step then fails "
        "and a retry re-attaches to the same workflow. None waits as long as it takes.",
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest wait for one HTTP request, in seconds."
    )

    def _client(self) -> Client:
        return Client(self.server_url, self.token, timeout=self.request_timeout_s)

    def _failures(self, client: Client | None = None) -> Any:
        """FlowMesh's errors as ``dagster.Failure`` naming where the settings came from."""
        url = client.url if client is not None else self.server_url
        return as_failure(url, from_resource=self.server_url is not None)

    def get_client(self) -> Client:
        """A FlowMesh client for this resource's server and token, for anything the
        resource does not wrap (``result_value``, ``lineage``, ``stats``); close it, or use
        it as a context manager."""
        return self._client()

    def submit(
        self,
        context: Context,
        work: WorkLike,
        *,
        node: str | None = None,
        idempotency_key: str | None = None,
    ) -> FlowMeshSubmission:
        """Submit ``work`` (an operator or a workflow) and return without waiting.

        ``work`` is a model, a mapping, or YAML/JSON text; a mapping with ``nodes`` is a
        workflow. ``node`` names the node whose result ``wait`` returns (default: the
        operator, or the workflow's only final node). ``idempotency_key`` defaults to one
        made of the run id, the step key, the step's assets and partition, and the work,
        so that a retry of this step gets this submission back.
        """
        with self._failures():
            parsed = parse_work(work, node)
        key = idempotency_key or _work.idempotency_key(context, parsed)
        with self._failures(), self._client() as client, self._failures(client):
            if isinstance(parsed.document, Workflow):
                submitted = client.submit_workflow(parsed.document, idempotency_key=key)
            else:
                submitted = client.submit_operator(parsed.document, idempotency_key=key)
        plan = {p.node: p for p in submitted.nodes}
        op_key = plan[parsed.node].op_key if parsed.node in plan else None
        replayed = submitted.replayed
        op_context(context).log.info(
            f"FlowMesh workflow {submitted.workflow_id} "
            f"{'re-attached' if replayed else 'submitted'} (node {parsed.node!r})"
        )
        return FlowMeshSubmission(
            workflow_id=submitted.workflow_id,
            node=parsed.node,
            op_key=op_key,
            idempotency_key=key,
            reattached=replayed,
            metadata=submission_metadata(
                submitted.workflow_id, parsed.node, op_key, submitted.nodes, replayed=replayed
            ),
        )

    def _wait_status(self, context: Context, submission: FlowMeshSubmission) -> WorkflowStatus:
        """The workflow's status once it ended (or ``wait_timeout_s`` passed), logging what
        it waits on meanwhile. A terminated run (an interrupt at any moment of the wait,
        opening the client included) cancels the workflow: FlowMesh drops this request
        (items others also wait for go on for them, docs/isolation.md "Cancelling")."""
        try:
            with self._failures(), self._client() as client, self._failures(client):
                return client.wait(
                    submission.workflow_id,
                    timeout=self.wait_timeout_s,
                    lineage=True,
                    progress=lambda st: op_context(context).log.info(
                        f"FlowMesh workflow {submission.workflow_id} {progress_summary(st)}"
                    ),
                )
        except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
            with self._client() as client:
                _cancel(context, client, submission.workflow_id)
            raise

    def wait(self, context: Context, submission: FlowMeshSubmission) -> FlowMeshResult:
        """Wait for a submission to finish and load its result node's value, verified.

        Raises ``dagster.Failure`` with FlowMesh's error when the workflow failed (no
        step retry: it would re-attach to the same failed workflow), or when it is still
        running after ``wait_timeout_s`` (a retry re-attaches and keeps waiting).
        """
        status = self._wait_status(context, submission)
        with self._failures(), self._client() as client, self._failures(client):
            if status.state == "failed":
                raise _failed(submission, status.nodes)
            if status.state == "cancelled":
                raise dg.Failure(
                    description=f"FlowMesh workflow {submission.workflow_id} was cancelled "
                    "(flowmesh cancel, the SDK's cancel_workflow, or a terminated run); "
                    "re-materialize to submit afresh",
                    metadata=dict(submission.metadata),
                    allow_retries=False,
                )
            if status.state != "done":
                raise dg.Failure(
                    description=f"FlowMesh workflow {submission.workflow_id} is still "
                    f"{status.state} after {self.wait_timeout_s:g} s; a retry of this step "
                    "re-attaches to it and waits on",
                    metadata=dict(submission.metadata),
                )
            node = next(n for n in status.nodes if n.node == submission.node)
            digest = node.result_digest
            if digest is None:
                raise dg.Failure(f"FlowMesh reports node {node.node!r} done without a result")
            value = client.result_value(digest)
        result = FlowMeshResult(
            workflow_id=submission.workflow_id,
            node=submission.node,
            op_key=node.op_key,
            result_digest=digest,
            value=value,
            digest=content_digest(value),
            lineage=tuple(r for n in status.nodes for r in n.lineage),
            metadata=result_metadata(
                submission.workflow_id,
                submission.node,
                node.op_key,
                digest,
                status.nodes,
                replayed=submission.reattached,
            ),
        )
        op_context(context).log.info(_summary(result))
        return result

    def run(
        self,
        context: Context,
        work: WorkLike,
        *,
        node: str | None = None,
        idempotency_key: str | None = None,
    ) -> FlowMeshResult:
        """Submit ``work``, wait for it, and return its result: ``submit`` then ``wait``."""
        submission = self.submit(context, work, node=node, idempotency_key=idempotency_key)
        return self.wait(context, submission)


def _failed(submission: FlowMeshSubmission, nodes: Sequence[NodeStatusLike]) -> dg.Failure:
    errors = [f"node {n.node!r}: {n.error}" for n in nodes if n.state == "failed" and n.error]
    reason = "; ".join(errors) or "no error was recorded"
    return dg.Failure(
        description=f"FlowMesh workflow {submission.workflow_id} failed: {reason}",
        metadata=dict(submission.metadata),
        allow_retries=False,
    )


def _summary(result: FlowMeshResult) -> str:
    meta = result.metadata
    counts = ", ".join(
        f"{meta[f'flowmesh/{what}'].value} {what}" for what in ("executed", "cache_hit", "joined")
    )
    return (
        f"FlowMesh workflow {result.workflow_id} done: node {result.node!r} -> "
        f"{result.result_digest} ({counts})"
    )


def _cancel(context: Context, client: Client, workflow_id: str) -> None:
    log = op_context(context).log
    try:
        status = client.cancel_workflow(workflow_id)
    except FlowMeshError as exc:
        log.warning(f"could not cancel FlowMesh workflow {workflow_id}: {exc}")
        return
    log.info(f"cancelled FlowMesh workflow {workflow_id} (now {status.state})")
