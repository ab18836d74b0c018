"""The two variants without a shared fabric: a static worker per submission, and the oracle.

**static**: the paper's isolated pipelines. Each submission gets a worker of its own (one
type for everyone, on-demand), requested when the submission arrives: it boots (the same
boot time as the fabric's workers, billed and in the latency, never queued behind another
tenant) and runs the workflow's stages one
after the other, each stage's items in full batches (what vLLM would do with them), loads
each stage's model when it changes, and is billed from arrival to the workflow's end.
Nothing is shared: every tenant recomputes the overlap.

**oracle**: a lower bound. Only the unique work (the distinct op keys across all
submissions), each stage on the accelerator with the lowest $ per item (or, for the energy
oracle, the lowest Wh per item) at its largest batch, with no model loads, no idle time
and no boot. It has no latency.
"""

from __future__ import annotations

from bench.sim.engine import Outcome
from bench.sim.fleet import Usage
from bench.sim.hardware import ACCELERATORS, Roofline, best_per_item
from bench.sim.workload import Stage, Submission, item_keys, training_key

__all__ = ["run_oracle", "run_static"]


def run_static(subs: list[Submission], type_name: str = "A100") -> Outcome:
    acc = ACCELERATORS[type_name]
    roof = Roofline()
    works = sorted({st.work for s in subs for st in s.template.stages}, key=repr)
    cap = Roofline.max_batch(acc, works)
    out = Outcome([], 0.0, Usage())
    end = 0.0
    for sub in subs:
        seconds, warm, items = acc.boot_s, None, len(sub.prompts)
        for stage in sub.template.stages:
            if stage.work.model != warm:
                seconds += roof.load_seconds(acc, stage.work.model)
                warm = stage.work.model
            if stage.training:
                seconds += roof.batch_seconds(acc, stage.work, len(sub.prompts))
                count, batches = 1, 1
            else:
                count = items * stage.samples
                full, rest = divmod(count, cap)
                seconds += full * roof.batch_seconds(acc, stage.work, cap)
                seconds += roof.batch_seconds(acc, stage.work, rest) if rest else 0.0
                batches = full + (1 if rest else 0)
                items = count
            out.requested += count
            out.executed += count
            out.batches += batches
        out.usage.usd += acc.on_demand_hr * seconds / 3600.0
        out.usage.wh += acc.watts * (seconds - acc.boot_s) / 3600.0
        out.usage.busy_s += seconds - acc.boot_s
        out.usage.billed_s += seconds
        out.latencies.append(seconds)
        out.workflows += 1
        out.by_type[type_name] += 1
        end = max(end, sub.time + seconds)
    out.usage.peak_workers = _peak(subs, out.latencies)
    out.makespan_s = end - (subs[0].time if subs else 0.0)
    return out


def _peak(subs: list[Submission], latencies: list[float]) -> int:
    edges = sorted(
        [(s.time, 1) for s in subs]
        + [(s.time + lat, -1) for s, lat in zip(subs, latencies, strict=True)]
    )
    peak = live = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    return peak


def run_oracle(subs: list[Submission], price: str = "on_demand", by: str = "usd") -> Outcome:
    """The distinct work on the best accelerator per item: by $ (``by="usd"``) or by Wh."""
    roof = Roofline()
    out = Outcome([], 0.0, Usage())
    for stage, count, examples in _distinct_work(subs, out):
        n = examples if stage.training else 256
        acc, per_item = best_per_item(roof, stage.work, price, n, by)
        seconds = per_item * (examples if stage.training else count)
        hourly = acc.on_demand_hr if price == "on_demand" else acc.market_hr
        out.usage.usd += hourly * seconds / 3600.0
        out.usage.wh += acc.watts * seconds / 3600.0
        out.usage.busy_s += seconds
        out.usage.billed_s += seconds
        out.executed += count
        out.by_type[acc.name] += count
    return out


def _distinct_work(subs: list[Submission], out: Outcome) -> list[tuple[Stage, int, int]]:
    """(stage, distinct items, examples per training run) over every submission; counts
    the requested items into ``out``."""
    items: dict[str, tuple[Stage, set[str]]] = {}
    runs: dict[str, tuple[Stage, int]] = {}
    for sub in subs:
        keys = [f"p{p}" for p in sub.prompts]
        for stage in sub.template.stages:
            if stage.training:
                keys = [training_key(stage, keys)]
                runs[keys[0]] = (stage, len(sub.prompts))
            else:
                keys = item_keys(stage, keys)
                items.setdefault(stage.signature, (stage, set()))[1].update(keys)
            out.requested += len(keys)
    work = [(stage, len(keys), 0) for stage, keys in items.values()]
    return work + [(stage, 1, examples) for stage, examples in runs.values()]
