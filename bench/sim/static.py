"""The two variants without a shared fabric: a static worker per submission, and the oracle.

**static**: the paper's isolated pipelines. Each submission gets a worker of its own (one
type for everyone, on-demand), requested when the submission arrives: it boots (the same
boot time as the fabric's workers, billed and in the latency, never queued behind another
tenant) and runs the workflow's stages one
after the other, each stage's items in full batches (what vLLM would do with them), loads
each stage's model when it changes, and is billed from arrival to the workflow's end.
Nothing is shared: every tenant recomputes the overlap.

**oracle**: a lower bound on cost. Only the unique work (the distinct op keys across all
submissions), each stage on the accelerator with the lowest $ per item at its largest
batch, with no model loads, no idle time and no boot. It has no latency.
"""

from __future__ import annotations

from bench.sim.engine import Outcome
from bench.sim.fleet import Usage
from bench.sim.hardware import ACCELERATORS, Roofline, cheapest_per_item
from bench.sim.workload import Submission, item_keys, training_key

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


def run_oracle(subs: list[Submission], price: str = "on_demand") -> Outcome:
    roof = Roofline()
    unique: dict[str, set[str]] = {}
    stage_of = {}
    out = Outcome([], 0.0, Usage())
    for sub in subs:
        keys = [f"p{p}" for p in sub.prompts]
        for stage in sub.template.stages:
            if stage.training:
                keys = [training_key(stage, keys)]
                unique.setdefault(keys[0], set()).add(str(len(sub.prompts)))
            else:
                keys = item_keys(stage, keys)
                unique.setdefault(stage.signature, set()).update(keys)
            stage_of[stage.signature] = stage
            if stage.training:
                stage_of[keys[0]] = stage
            out.requested += len(keys)
    for group, keys in unique.items():
        stage = stage_of[group]
        if stage.training:
            n = int(next(iter(keys)))
            name, usd = cheapest_per_item(roof, stage.work, price, n)
            seconds, count = roof.batch_seconds(ACCELERATORS[name], stage.work, n), 1
            usd *= n
        else:
            n = 256
            name, usd = cheapest_per_item(roof, stage.work, price, n)
            count = len(keys)
            seconds = roof.batch_seconds(ACCELERATORS[name], stage.work, n) / n * count
            usd *= count
        out.usage.usd += usd
        out.usage.wh += ACCELERATORS[name].watts * seconds / 3600.0
        out.usage.busy_s += seconds
        out.usage.billed_s += seconds
        out.executed += count
        out.by_type[name] += count
    return out
