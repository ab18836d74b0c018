"""What hardware this worker has and what it costs: the profile the scheduler weighs.

The accelerator is detected through torch (CUDA device name and memory) or is the CPU.
Price and power default per known GPU type and can be overridden (``--price``,
``--watts``); the defaults are list figures, not a bill, and the README says so.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from flowmesh_core.models import WorkerProfile

__all__ = ["HARDWARE", "Hardware", "detect_hardware", "make_profile", "new_worker_id"]


@dataclass(frozen=True)
class Hardware:
    """An accelerator as detected: a short type name, its memory and the device to use."""

    accelerator: str
    memory_bytes: int
    device: str


# type: ($/hour on demand, board power in W). Power: NVIDIA data sheets (max TDP/TBP:
# H100 SXM 700 W, H200 SXM 700 W, A100 SXM 400 W, L40S 350 W, L4 72 W, A10G 150 W,
# T4 70 W). Price: typical single-GPU on-demand cloud rates, late 2025 (GPU marketplaces
# and neoclouds list H100 at $2-3/h, A100 80GB $1.3-1.8/h, L40S ~$1/h, L4 ~$0.5-0.8/h).
# CPU: a 2-vCPU general-purpose VM (~$0.08/h) at ~35 W attributed package power.
HARDWARE: dict[str, tuple[float, float]] = {
    "H200": (3.50, 700.0),
    "H100": (2.50, 700.0),
    "A100": (1.50, 400.0),
    "L40S": (1.00, 350.0),
    "A10G": (1.00, 150.0),
    "L4": (0.70, 72.0),
    "T4": (0.35, 70.0),
    "cpu": (0.08, 35.0),
}


def detect_hardware() -> Hardware:
    """The first CUDA device if torch sees one, else this machine's CPU and memory.

    Without an NVIDIA driver on the machine torch is not imported at all (it costs
    seconds per worker start, and a data-only worker may not need it).
    """
    if not any(Path(p).exists() for p in ("/dev/nvidiactl", "/proc/driver/nvidia")):
        return _cpu()
    try:
        import torch
    except ImportError:  # a data-only worker need not have torch
        return _cpu()
    if not torch.cuda.is_available():
        return _cpu()
    props = torch.cuda.get_device_properties(0)
    return Hardware(_gpu_type(props.name), int(props.total_memory), "cuda")


def _cpu() -> Hardware:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 0
    return Hardware("cpu", int(memory), "cpu")


def _gpu_type(name: str) -> str:
    """ "NVIDIA H100 80GB HBM3" -> "H100"; an unknown board keeps its full name."""
    upper = name.upper()
    for known in sorted(HARDWARE, key=len, reverse=True):
        if known != "cpu" and known.upper() in upper:
            return known
    return name.replace("NVIDIA ", "").strip()[:64] or "gpu"


def new_worker_id() -> str:
    """host-pid-random: unique per process, readable in `flowmesh stats`."""
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"{host[:40] or 'worker'}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


def make_profile(
    hardware: Hardware,
    *,
    worker_id: str | None = None,
    price_per_hour: float | None = None,
    watts: float | None = None,
    slots: int = 1,
    max_batch: int = 64,
    labels: dict[str, str] | None = None,
) -> WorkerProfile:
    """The profile to register; price and watts default from ``HARDWARE`` by type."""
    default_price, default_watts = HARDWARE.get(hardware.accelerator, (1.0, 300.0))
    return WorkerProfile(
        worker_id=worker_id or new_worker_id(),
        accelerator=hardware.accelerator,
        memory_bytes=hardware.memory_bytes,
        price_per_hour=default_price if price_per_hour is None else price_per_hour,
        watts=default_watts if watts is None else watts,
        slots=slots,
        max_batch=max_batch,
        labels=labels or {},
    )
