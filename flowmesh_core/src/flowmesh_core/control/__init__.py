"""The control plane: where every tenant's work meets, is de-duplicated, batched and placed.

``ControlPlane`` is the whole of it as one object (what ``flowmesh serve`` exposes over
HTTP); the parts are the workflow engine (submission, expansion, advance), the scheduler
(lease, ready pool, utility argmax), the completion applier, and the pure decision
code in ``utility``, ``throughput`` and ``planning`` that the simulator reuses.
"""

from flowmesh_core.control.service import ControlPlane
from flowmesh_core.control.tenants import (
    create_tenant,
    revoke_tenant,
    rotate_token,
    set_quotas,
)
from flowmesh_core.models.api import (
    NodePlan,
    NodeState,
    NodeStatus,
    StatsReport,
    SubmitResult,
    Tenant,
    TenantStats,
    WorkerState,
    WorkflowStatus,
)

__all__ = [
    "ControlPlane",
    "NodePlan",
    "NodeState",
    "NodeStatus",
    "StatsReport",
    "SubmitResult",
    "Tenant",
    "TenantStats",
    "WorkerState",
    "WorkflowStatus",
    "create_tenant",
    "revoke_tenant",
    "rotate_token",
    "set_quotas",
]
