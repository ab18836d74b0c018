"""Dagster integration for FlowMesh (resource, IO manager): to come."""

__all__: list[str] = []
__version__ = "0.1.0"
