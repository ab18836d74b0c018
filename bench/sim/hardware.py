"""The simulated hardware and models, and how fast one runs the other (a roofline).

Every number below carries its source. Specs come from the vendors' datasheets; prices are
public list prices as published in 2025 (not re-checked from this machine, which reaches
no price pages: re-check before quoting them); what no datasheet gives (efficiency
factors, idle draw, boot and load times) is marked ASSUMPTION with the reasoning.

The throughput model is a roofline per batch: prefill is bound by compute (2 FLOPs per
parameter per token), decode by memory bandwidth (every step reads the weights once and
each sequence's KV cache), whichever is slower at each phase, plus a fixed per-batch and
per-step framework overhead. Training is 6 FLOPs per parameter per token at a training
MFU. It has not been calibrated against real vLLM runs: no GPU was lent to the sessions
that wrote it (bench/RESULTS.md says so next to every figure that depends on it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ACCELERATORS", "MODELS", "Accelerator", "ModelSpec", "Roofline", "Work"]


@dataclass(frozen=True, slots=True)
class Accelerator:
    """One worker type: a single accelerator (or a CPU node) and what it costs."""

    name: str
    tflops: float  # dense BF16 tensor TFLOPS
    bandwidth_gbs: float  # memory bandwidth, GB/s
    memory_gb: float
    watts: float  # board power (TDP) under load
    idle_watts: float
    on_demand_hr: float  # $/hour, cloud on-demand, one accelerator
    market_hr: float  # $/hour, marketplace / spot, one accelerator
    boot_s: float  # from request to registered worker


ACCELERATORS: dict[str, Accelerator] = {
    a.name: a
    for a in (
        # H100 SXM5 80 GB: 989 TFLOPS BF16 dense, 3.35 TB/s HBM3, 700 W (NVIDIA H100 Tensor
        # Core GPU datasheet). $6.88/h: AWS p5.48xlarge on-demand ($55.04/h for 8 GPUs after
        # the June 2025 P5 price cut). $2.49/h: RunPod community-cloud H100 SXM (2025 list).
        Accelerator("H100", 989.0, 3350.0, 80.0, 700.0, 90.0, 6.88, 2.49, 120.0),
        # A100 SXM4 80 GB: 312 TFLOPS BF16 dense, 2,039 GB/s HBM2e, 400 W (NVIDIA A100
        # datasheet). $3.43/h: AWS p4de.24xlarge on-demand ($27.45/h for 8 after the June
        # 2025 cut). $1.19/h: RunPod community-cloud A100 80 GB (2025 list).
        Accelerator("A100", 312.0, 2039.0, 80.0, 400.0, 55.0, 3.43, 1.19, 120.0),
        # L40S 48 GB: 362 TFLOPS BF16 dense, 864 GB/s GDDR6, 350 W (NVIDIA L40S datasheet).
        # $1.86/h: AWS g6e.xlarge on-demand. $0.86/h: RunPod L40S (2025 list).
        Accelerator("L40S", 362.0, 864.0, 48.0, 350.0, 35.0, 1.86, 0.86, 90.0),
        # L4 24 GB: 121 TFLOPS BF16 dense, 300 GB/s GDDR6, 72 W (NVIDIA L4 datasheet).
        # $0.80/h: AWS g6.xlarge on-demand ($0.8048). $0.43/h: RunPod L4 (2025 list).
        Accelerator("L4", 121.0, 300.0, 24.0, 72.0, 16.0, 0.80, 0.43, 90.0),
        # CPU: half a Sapphire Rapids socket (AWS c7i.8xlarge, 32 vCPU, $1.428/h on-demand,
        # spot ~$0.55). BF16 via AMX peaks near 2 TFLOPS for 16 cores in practice
        # (ASSUMPTION: Intel quotes per-core AMX peaks, not a sustained figure); 150 GB/s
        # is half of 8 channels of DDR5-4800 (307 GB/s per socket); 175 W is half the
        # 350 W TDP of a Xeon 8488C. Memory: 64 GiB of the instance.
        Accelerator("cpu", 2.0, 150.0, 64.0, 175.0, 60.0, 1.428, 0.55, 60.0),
    )
}
# Idle draw (ASSUMPTION): 10-20 % of TDP for GPUs, as nvidia-smi shows on idle data-centre
# boards with a model loaded; boot (ASSUMPTION): 1.5-2 minutes from request to a worker
# that has registered, GPU images being large.


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the roofline needs to know of a model."""

    name: str
    params_b: float  # billions of parameters
    kv_bytes_per_token: int  # 2 (K, V) x layers x kv_heads x head_dim x 2 bytes (bf16)

    @property
    def weight_bytes(self) -> float:
        return self.params_b * 1e9 * 2.0  # bf16


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        # Llama-3.2-1B: 1.24 B parameters, 16 layers, 8 KV heads of dim 64 (its config.json).
        ModelSpec("llama-3.2-1b", 1.24, 2 * 16 * 8 * 64 * 2),
        # Llama-3.2-3B: 3.21 B parameters, 28 layers, 8 KV heads of dim 128 (its config.json).
        ModelSpec("llama-3.2-3b", 3.21, 2 * 28 * 8 * 128 * 2),
        # A 1B reward model: Llama-3.2-1B's body with a scalar head (same shape).
        ModelSpec("rm-1b", 1.24, 2 * 16 * 8 * 64 * 2),
        # all-MiniLM-L6-v2: 22.7 M parameters, 6 layers, 12 heads of dim 32 (its config).
        ModelSpec("minilm-l6", 0.0227, 2 * 6 * 12 * 32 * 2),
    )
}

# ASSUMPTIONS (no datasheet gives these; typical of vLLM / PyTorch reports):
MFU_PREFILL = 0.5  # share of peak FLOPs a large prefill reaches
MBU_DECODE = 0.7  # share of peak bandwidth a decode step reaches
MFU_TRAIN = 0.35  # training MFU for 1-3 B models on one accelerator
BATCH_OVERHEAD_S = 0.015  # scheduling, tokenisation, sampling set-up per batch
STEP_OVERHEAD_S = 0.0004  # kernel launches per decode step (with CUDA graphs)
LOAD_BANDWIDTH_GBS = 2.0  # local NVMe -> accelerator, weights from a warm disk cache
LOAD_FIXED_S = 8.0  # process and engine start-up (vLLM profiling, graph capture)


@dataclass(frozen=True, slots=True)
class Work:
    """The shape of one item of an operator kind: tokens in and out, or a training step."""

    kind: str  # llm.generate, score, embed, train.sft, train.dpo
    model: str
    prompt_tokens: int
    output_tokens: int = 0  # generate only
    passes: float = 1.0  # training: forward+backward passes per example (DPO: 2 + ref)


class Roofline:
    """Seconds for a batch of ``n`` items of ``work`` on ``acc``; the simulator's ground truth."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, Work, int], float] = {}

    def batch_seconds(self, acc: Accelerator, work: Work, n: int) -> float:
        key = (acc.name, work, n)
        seconds = self._memo.get(key)
        if seconds is None:
            seconds = self._memo[key] = self._seconds(acc, work, n)
        return seconds

    def _seconds(self, acc: Accelerator, work: Work, n: int) -> float:
        model = MODELS[work.model]
        flops = acc.tflops * 1e12
        bandwidth = acc.bandwidth_gbs * 1e9
        params = model.params_b * 1e9
        if work.kind.startswith("train."):
            tokens = n * work.prompt_tokens * work.passes
            return BATCH_OVERHEAD_S + 6.0 * params * tokens / (flops * MFU_TRAIN)
        prefill = max(
            2.0 * params * n * work.prompt_tokens / (flops * MFU_PREFILL),
            model.weight_bytes / (bandwidth * MBU_DECODE),
        )
        if work.kind != "llm.generate" or work.output_tokens == 0:
            return BATCH_OVERHEAD_S + prefill
        steps = work.output_tokens
        kv = model.kv_bytes_per_token * n * (steps * work.prompt_tokens + steps * (steps + 1) / 2)
        read = (steps * model.weight_bytes + kv) / (bandwidth * MBU_DECODE)
        compute = 2.0 * params * n * steps / (flops * MFU_PREFILL)
        return BATCH_OVERHEAD_S + prefill + max(read, compute) + steps * STEP_OVERHEAD_S

    @staticmethod
    def load_seconds(acc: Accelerator, model: str) -> float:
        return LOAD_FIXED_S + MODELS[model].weight_bytes / (LOAD_BANDWIDTH_GBS * 1e9)

    @staticmethod
    def max_batch(acc: Accelerator, works: list[Work], cap: int = 256) -> int:
        """Most sequences whose KV cache fits beside the largest weights (in 90 % of memory)."""
        room = 0.9 * acc.memory_gb * 1e9 - 1e9  # 1 GB for activations and the runtime
        room -= max(MODELS[w.model].weight_bytes for w in works)
        fits = [cap]
        for work in works:
            if not work.kind.startswith("train."):
                per_seq = MODELS[work.model].kv_bytes_per_token * (
                    work.prompt_tokens + work.output_tokens
                )
                fits.append(int(room // per_seq))
        return max(1, min(fits))


def best_per_item(
    roofline: Roofline, work: Work, price: str, n: int, by: str = "usd"
) -> tuple[Accelerator, float]:
    """The accelerator with the lowest $ (``by="usd"``) or Wh (``by="energy"``) per item of
    ``work`` at batch ``n`` (or the most its memory allows), and its seconds per item."""
    best: tuple[Accelerator, float] | None = None
    best_cost = math.inf
    for acc in ACCELERATORS.values():
        hourly = acc.on_demand_hr if price == "on_demand" else acc.market_hr
        size = n if work.kind.startswith("train.") else min(n, Roofline.max_batch(acc, [work]))
        per_item = roofline.batch_seconds(acc, work, size) / size
        cost = per_item * (hourly if by == "usd" else acc.watts)
        if cost < best_cost:
            best, best_cost = (acc, per_item), cost
    assert best is not None
    return best
