"""Apache Airflow provider for FlowMesh: run FlowMesh operators and workflows as tasks.

``FlowMeshOperator`` submits an operator or a small workflow and defers to
``FlowMeshTrigger`` until it is done; its XCom value is a small reference to the result.
``FlowMeshWorkflowSensor`` waits for a workflow submitted elsewhere; both link to the
workflow's dashboard page (``FlowMeshWorkflowLink``).
``FlowMeshHook`` turns a ``flowmesh`` connection (host = control plane URL, password =
tenant token) into a client; ``@task.flowmesh`` (``flowmesh_task``) lets a TaskFlow
function return the work to run. The guide is docs/airflow.md.

The names below load on first use: Airflow imports this package (for
``get_provider_info``) while its own configuration is still being set up, so importing
the Task SDK here would be circular.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowmesh_airflow.decorators import flowmesh_task
    from flowmesh_airflow.hooks import FlowMeshHook
    from flowmesh_airflow.links import FlowMeshWorkflowLink
    from flowmesh_airflow.operators import FlowMeshOperator
    from flowmesh_airflow.sensors import FlowMeshWorkflowSensor
    from flowmesh_airflow.triggers import FlowMeshTrigger

__all__ = [
    "FlowMeshHook",
    "FlowMeshOperator",
    "FlowMeshTrigger",
    "FlowMeshWorkflowLink",
    "FlowMeshWorkflowSensor",
    "flowmesh_task",
]
__version__ = "0.1.0"

_HOMES = {
    "FlowMeshHook": "flowmesh_airflow.hooks",
    "FlowMeshOperator": "flowmesh_airflow.operators",
    "FlowMeshTrigger": "flowmesh_airflow.triggers",
    "FlowMeshWorkflowLink": "flowmesh_airflow.links",
    "FlowMeshWorkflowSensor": "flowmesh_airflow.sensors",
    "flowmesh_task": "flowmesh_airflow.decorators",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flowmesh_airflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
