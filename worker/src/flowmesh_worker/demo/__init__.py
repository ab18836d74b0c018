"""``flowmesh demo``: FlowMesh as separate processes, on real models, measured.

Three tenants submit overlapping workflows to one control plane with two worker
processes on the embedded store; then each tenant runs the same work alone, on a
control plane and one worker process of its own. The report compares the two from the
control planes' own stats and each worker process's CPU time. ``workload`` builds the
workflows from the prompts shipped in ``prompts.json``; ``fabric`` starts and stops the
processes; ``warmup`` builds the tiny models; ``session`` runs and measures, ``run``
puts it all together; ``results`` holds the figures, ``progress`` and ``report`` draw
them.

Importing this package does not import torch; ``main`` does, in its warm-up.
"""

from flowmesh_worker.demo.results import DemoOptions, DemoResult
from flowmesh_worker.demo.run import main, run_demo
from flowmesh_worker.demo.session import DemoInterrupted

__all__ = ["DemoInterrupted", "DemoOptions", "DemoResult", "main", "run_demo"]
