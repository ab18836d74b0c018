"""The errors a FlowMesh task raises on top of the client SDK's own.

    FlowMeshError (flowmesh_core.errors)
    ├── ... every client error (ServiceUnavailableError names the URL it tried)
    ├── OperatorFailedError ...... the operator failed on FlowMesh: its message is FlowMesh's
    └── OperatorTimeoutError ..... ``timeout`` passed before the operator finished

Both carry the workflow id, so a retry or a person can look the run up
(``flowmesh status <id>``). This module must never catch or rename the client's errors:
they already say what to fix.
"""

from __future__ import annotations

from flowmesh_core.errors import FlowMeshError

__all__ = ["OperatorFailedError", "OperatorTimeoutError"]


class OperatorFailedError(FlowMeshError):
    """The operator failed on the FlowMesh side; ``str(err)`` holds FlowMesh's message."""

    # Defaults keep the class picklable (Prefect may pickle a failed state's exception):
    # pickle calls cls(*args) with the message alone, then restores the attributes.
    def __init__(self, message: str, workflow_id: str = "", op_key: str | None = None) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.op_key = op_key


class OperatorTimeoutError(FlowMeshError):
    """The wait ended before the operator did; the work goes on and a retry re-attaches."""

    def __init__(self, message: str, workflow_id: str = "") -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
