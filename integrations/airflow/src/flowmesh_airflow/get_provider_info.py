"""What Airflow's ProvidersManager learns about this provider, without importing it.

Found through the ``apache_airflow_provider`` entry point in this distribution's
``pyproject.toml``. The ``flowmesh`` connection type's form (labels, hidden fields,
placeholders) is declared here, as Airflow 3.2+ expects, not on the hook.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_provider_info"]

_PACKAGE = "flowmesh_airflow"


def get_provider_info() -> dict[str, Any]:
    """The provider's description, in the shape of Airflow's provider_info schema."""
    return {
        "package-name": "airflow-provider-flowmesh",
        "name": "FlowMesh",
        "description": "Run FlowMesh operators and workflows from Airflow: a deferrable "
        "operator, its trigger, a hook and the `flowmesh` connection type.",
        "integrations": [
            {
                "integration-name": "FlowMesh",
                "tags": ["software"],
            }
        ],
        "operators": [
            {"integration-name": "FlowMesh", "python-modules": [f"{_PACKAGE}.operators"]}
        ],
        "sensors": [{"integration-name": "FlowMesh", "python-modules": [f"{_PACKAGE}.sensors"]}],
        "extra-links": [f"{_PACKAGE}.links.FlowMeshWorkflowLink"],
        "hooks": [{"integration-name": "FlowMesh", "python-modules": [f"{_PACKAGE}.hooks"]}],
        "triggers": [{"integration-name": "FlowMesh", "python-modules": [f"{_PACKAGE}.triggers"]}],
        "connection-types": [
            {
                "connection-type": "flowmesh",
                "hook-class-name": f"{_PACKAGE}.hooks.FlowMeshHook",
                "hook-name": "FlowMesh",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port"],
                    "relabeling": {"host": "Control plane URL", "password": "Tenant token"},
                    "placeholders": {
                        "host": "http://127.0.0.1:8470",
                        "password": "fm_... (from `flowmesh tenant create`)",
                        "extra": '{"timeout": 30}',
                    },
                },
            }
        ],
        "task-decorators": [
            {"class-name": f"{_PACKAGE}.decorators.flowmesh_task", "name": "flowmesh"}
        ],
    }
