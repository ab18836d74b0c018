"""Multi-tenant benchmark: T tenants' post-training data workflows on real workers, with
overlapping prompt sets, through FlowMesh and its ablations, against an oracle.

Each tenant runs prompts -> llm.generate (flowmesh/tiny-gpt, greedy) -> score
(flowmesh/tiny-reward) -> data.filter -> embed (all-MiniLM-L6-v2) over P prompts, of
which the overlap's share comes from one pool common to every tenant. W real
`flowmesh worker` processes (torch at one thread each) on a real Redis, under a fresh key
prefix that is purged at the end, serve every variant, one after another:

  isolated     the static-worker baseline. Tenants run one at a time, each alone in the
               fabric and on ONE worker: every other worker is marked draining through
               the store's fleet API (`set_draining`), so the scheduler assigns it
               nothing while it keeps running warm. The control plane's dedup domain is
               the tenant (`dedup_domain = tenant`), so no result is shared across
               tenants, and as no other tenant's work is ever ready at the same time, no
               batch is either. Latency is each tenant's latency alone; the makespan is
               reported as if every tenant had its own worker in parallel (the longest
               alone run), which the output says. CPU-seconds count only the worker
               that served the tenant, over its run.
  no-dedup     all tenants at once, every node submitted `dedup: false`
  no-batching  all tenants at once, `scheduler_max_batch = 1`
  flowmesh     all tenants at once, everything on
  oracle       a lower bound: only the distinct items of each stage across all tenants,
               on the worker's own executors called in this process (no store, no
               Redis, no CAS), each stage at its fastest batch size of 8/16/32/64

With `--stages training` (or `data,training`), a training stage follows: tenants in
pairs ask for the same inference -> SFT and inference -> DPO pipelines (generate ->
score -> data.top_k -> train.sft; two samples -> score -> data.pairs -> train.dpo), run
by every variant but the oracle; its table counts the training runs executed against
those requested (bench/tenancy/training.py).

Every variant gets a fresh control plane in this process with its own settings, the
scheduler's throughput model as the warm-up left it, and records salted with its own
code (same token length), so none gets another's cache hits. Every worker ran every
model in a warm-up first; the oracle's loads are not timed either. Figures are
differences of counters read while the workers are idle: ControlPlane.stats (items,
batches, busy seconds, $ and Wh from the workers' declared price and power) and the
worker processes' own CPU clocks (/proc). Nothing here asserts a time.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root, so `bench` imports
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tenancy.cli import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__ or ""))
