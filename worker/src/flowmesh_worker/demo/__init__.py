"""``flowmesh demo``: the whole fabric in one process, on real models, measured.

Three tenants submit overlapping workflows to one control plane with two workers on the
embedded store; then each tenant runs the same work alone. The report compares the two
from the control plane's own stats. ``workload`` builds the workflows from the prompts
shipped in ``prompts.json``; ``fabric`` starts and stops the in-process fabric;
``warmup`` pays one-time imports before anything is measured; ``session`` runs and
measures, ``run`` puts it all together; ``results`` holds the figures, ``progress`` and
``report`` draw them.

Importing this package does not import torch; ``main`` does, in its warm-up.
"""

from flowmesh_worker.demo.results import DemoOptions, DemoResult
from flowmesh_worker.demo.run import main, run_demo
from flowmesh_worker.demo.session import DemoInterrupted

__all__ = ["DemoInterrupted", "DemoOptions", "DemoResult", "main", "run_demo"]
