"""Building a worker from settings: store, blob store, executors, warm cache, profile.

One place that decides which generate backend runs and where models live, so the
``flowmesh worker`` command, ``flowmesh demo`` and the tests build workers the same way.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flowmesh_core.blobs import BlobStore, open_blob_store
from flowmesh_core.model_names import model_roots, worker_model_dir
from flowmesh_core.models import WorkerProfile
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_worker.blob_cache import BlobCache
from flowmesh_worker.executors import Executor, create_executor
from flowmesh_worker.profile import Hardware, detect_hardware, make_profile
from flowmesh_worker.runner import BatchRunner
from flowmesh_worker.weights import WarmCache
from flowmesh_worker.weights.disk import CheckpointDisk
from flowmesh_worker.worker import Worker

__all__ = ["build_worker", "generate_backend", "model_dir"]


def model_dir(settings: Settings) -> Path:
    """Where this worker builds and unpacks models."""
    return worker_model_dir(settings)


def generate_backend(settings: Settings, hardware: Hardware) -> str:
    """``vllm`` on a GPU with vLLM installed (when set to auto), else ``transformers``."""
    choice = settings.worker_generate_backend
    if choice != "auto":
        return choice
    if hardware.device == "cuda" and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "transformers"


def build_worker(
    settings: Settings,
    *,
    hardware: Hardware | None = None,
    profile: WorkerProfile | None = None,
    store: Store | None = None,
    blobs: BlobStore | None = None,
    drain_s: float = 60.0,
    **profile_options: object,
) -> Worker:
    """A worker ready to ``run``; ``profile_options`` go to ``make_profile``."""
    hardware = hardware or detect_hardware()
    profile = profile or make_profile(hardware, **profile_options)  # type: ignore[arg-type]
    store = store or Store.from_settings(settings)
    blobs = blobs or open_blob_store(
        settings.blob_url, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region
    )
    backend = generate_backend(settings, hardware)
    modules = tuple(settings.worker_python_modules)

    def factory(kind: str) -> Executor:
        return create_executor(
            kind, device=hardware.device, python_modules=modules, generate_backend=backend
        )

    cache = WarmCache(settings.worker_model_cache_mb << 20)
    runner = BatchRunner(
        blobs,
        factory,
        cache,
        model_dir(settings),
        profile.worker_id,
        inline_bytes=settings.inline_result_bytes,
        model_roots=[Path(root) for root in model_roots(settings)],
        blob_cache=BlobCache(
            model_dir(settings) / "input-blobs", settings.worker_blob_cache_mb << 20
        ),
        checkpoint_disk=CheckpointDisk(
            model_dir(settings), settings.worker_checkpoint_disk_mb << 20
        ),
    )
    return Worker(
        store, runner, profile, heartbeat_s=max(0.2, settings.worker_ttl_s / 3), drain_s=drain_s
    )
