"""``FlowMeshTrigger``: waits in Airflow's triggerer for a FlowMesh workflow to finish.

It serialises only ids (the workflow id, the node whose result is wanted, the connection
id) and a wall-clock deadline, never a token or a payload. It long-polls the control plane
with the asyncio client, so hundreds of deferred tasks share one triggerer loop, and fires
exactly one event (see ``flowmesh_airflow._outcome``): done, failed, timeout, or error.

A control plane that stops answering for a while (a restart loses nothing: its state is
in Redis) is waited out for up to ``UNAVAILABLE_PATIENCE_S``; any other client error ends
the wait at once. This trigger must never block the loop: no sync client, no sync
connection lookup, no ``time.sleep``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from flowmesh_airflow import _outcome
from flowmesh_airflow.hooks import FlowMeshHook
from flowmesh_core.client import AsyncClient
from flowmesh_core.errors import FlowMeshError, ServiceUnavailableError

if TYPE_CHECKING:  # the client's return types; never imported at run time
    from flowmesh_core.models.api import WorkflowStatus

__all__ = ["FlowMeshTrigger"]

POLL_SLICE_S = 30.0
"""The longest single long-poll; progress is logged after each."""
UNAVAILABLE_PATIENCE_S = 60.0
"""How long an unreachable control plane is retried before the wait fails."""


class FlowMeshTrigger(BaseTrigger):
    """Fires one event when FlowMesh workflow ``workflow_id`` is done or failed.

    ``deadline`` is a Unix time (seconds): past it the event is ``timeout``, while the
    workflow goes on in FlowMesh. ``node`` names the node whose result the event's
    reference points at.
    """

    def __init__(
        self,
        *,
        workflow_id: str,
        node: str,
        deadline: float,
        timeout_s: float,
        flowmesh_conn_id: str = FlowMeshHook.default_conn_name,
    ) -> None:
        super().__init__()
        self.workflow_id = workflow_id
        self.node = node
        self.deadline = float(deadline)
        self.timeout_s = float(timeout_s)
        self.flowmesh_conn_id = flowmesh_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "workflow_id": self.workflow_id,
                "node": self.node,
                "deadline": self.deadline,
                "timeout_s": self.timeout_s,
                "flowmesh_conn_id": self.flowmesh_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await FlowMeshHook(self.flowmesh_conn_id).aget_async_client()
        except Exception as exc:  # a bad connection must end as an event, not a crash
            yield TriggerEvent(_outcome.error_event(self.workflow_id, str(exc)))
            return
        async with client:
            yield TriggerEvent(await self._wait(client))

    async def _wait(self, client: AsyncClient) -> dict[str, Any]:
        """Long-poll until a terminal state, the deadline, or a client error; the event.

        Polls at least once, so work that finished while the trigger was queued past its
        deadline still counts as finished.
        """
        last: WorkflowStatus | None = None
        unavailable_since: float | None = None
        while True:
            remaining = self.deadline - time.time()
            try:
                last = await client.wait(
                    self.workflow_id, timeout=max(0.0, min(remaining, POLL_SLICE_S)), lineage=True
                )
            except ServiceUnavailableError as exc:
                unavailable_since = unavailable_since or time.monotonic()
                if remaining <= 0 or time.monotonic() - unavailable_since > UNAVAILABLE_PATIENCE_S:
                    return _outcome.error_event(self.workflow_id, str(exc))
                self.log.warning("FlowMesh unavailable, retrying: %s", exc)
                await asyncio.sleep(min(5.0, remaining))
                continue
            except FlowMeshError as exc:
                return _outcome.error_event(self.workflow_id, str(exc))
            unavailable_since = None
            self.log.info("FlowMesh workflow %s %s", self.workflow_id, _outcome.summary(last))
            if last.state in _outcome.TERMINAL:
                return await self._terminal(client)
            if remaining <= 0:
                return _outcome.timeout_event(self.workflow_id, self.timeout_s, last)

    async def _terminal(self, client: AsyncClient) -> dict[str, Any]:
        try:
            status = await client.status(self.workflow_id, lineage=True)
        except FlowMeshError as exc:
            return _outcome.error_event(self.workflow_id, str(exc))
        return _outcome.outcome(status, self.node)
