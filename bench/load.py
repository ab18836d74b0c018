"""Load run: C concurrent HTTP clients, each submitting a small workflow and waiting for it.

Against a local cluster it starts itself (``flowmesh up``: one ``flowmesh serve`` and W
``flowmesh worker`` processes, plus K-1 ``flowmesh serve --no-scheduler`` API replicas,
all on 127.0.0.1 and the real Redis under a fresh key prefix that is purged at the end),
or against an existing server (``--url``). Each client, in a closed loop, POSTs a
three-node workflow of cheap data.* kinds (template -> dedup -> template, unique records
by default, so nothing is a cache hit) and long-polls its ``/wait`` until it is done or
failed. The run is bounded by time (``--duration``) and optionally by count
(``--max-workflows``) and stops by itself; the workflows in flight then get
``--drain-timeout`` seconds.

It reports workflows/s, submit latency and submit->done latency (p50/p95/p99), how many
workflows were submitted, finished, failed and lost, and the CPU each process used over
the timed phase (from /proc), which shows whether the API's process is the bound. It
exits 1 unless every accepted workflow finished. Nothing here asserts a time.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root, so `bench` imports
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadrun.cli import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__ or ""))
