"""The control plane's HTTP API (FastAPI): what ``flowmesh serve`` runs.

``create_app(control)`` is the whole public surface; the modules beside it are internal.
"""

from flowmesh_core.api.app import create_app

__all__ = ["create_app"]
