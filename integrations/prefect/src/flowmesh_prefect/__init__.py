"""Prefect 3 integration for FlowMesh (task decorator, credentials block): to come."""

__all__: list[str] = []
__version__ = "0.1.0"
