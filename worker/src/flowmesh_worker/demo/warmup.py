"""Getting the machine ready before anything is measured: imports, tiny models, page cache.

Python imports torch, transformers and sentence-transformers once per process (about ten
seconds on a small CPU), and the first ``from_pretrained`` of an architecture imports its
modelling code too. Whichever run came first would pay that inside a "model load" and
look slower than it is. So the demo imports the executors and loads every model once
here, then throws the loaded copies away, and forks its worker processes from this one
afterwards (``fabric``), as a pre-loading server forks its workers: each measured run
still starts with cold workers that load every model from disk, but none pays for
Python's one-time imports, and five processes do not import the same libraries at once.

The tiny models are built into the worker model dir on the first run on a machine and
reused after that; this module never downloads anything.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from flowmesh_core.models import ModelRef
from flowmesh_worker.demo.workload import EMBED_MODEL, GENERATE_MODEL, SCORE_MODEL
from flowmesh_worker.executors import create_executor
from flowmesh_worker.profile import Hardware, detect_hardware
from flowmesh_worker.weights import resolve_model

__all__ = ["Warmup", "quiet_ml_libraries", "warm_up"]

MODELS = {"llm.generate": GENERATE_MODEL, "score": SCORE_MODEL, "embed": EMBED_MODEL}


@dataclass(frozen=True)
class Warmup:
    """What the warm-up found: the hardware, where models live, and what it cost."""

    hardware: Hardware
    model_dir: Path
    built: tuple[str, ...]  # directories this warm-up added to model_dir (a first run)
    seconds: float


def quiet_ml_libraries() -> None:
    """Keep progress bars and advice out of the demo's screen.

    Idempotent; touches only the libraries' own verbosity switches.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    for name in ("sentence_transformers", "huggingface_hub", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)


def warm_up(model_dir: Path) -> Warmup:
    """Import the ML stack, build missing tiny models, load each demo model once."""
    started = time.monotonic()
    hardware = detect_hardware()
    quiet_ml_libraries()
    before = _entries(model_dir)
    for kind, name in MODELS.items():
        executor = create_executor(kind, device=hardware.device)
        ref = ModelRef(name=name)
        executor.load(resolve_model(ref, model_dir=model_dir), ref)
    built = tuple(sorted(_entries(model_dir) - before))
    return Warmup(hardware, model_dir, built, time.monotonic() - started)


def _entries(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {p.name for p in directory.iterdir() if not p.name.startswith(".")}
