"""FlowMesh stateless worker: executes batches of operators and writes results to the CAS.

The worker loop and executors arrive with the workers issue; this package holds its place
in the workspace so that the dependency graph (worker -> flowmesh) is real from the start.
"""

__all__: list[str] = []
__version__ = "0.1.0"
