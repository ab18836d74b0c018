"""Model names as FlowMesh keys them: aliases folded into one id, local paths checked.

A model is named three ways: a model FlowMesh ships (``BUILTIN_MODELS``), a Hugging Face
id that workers find in their offline cache, or a local directory. The same weights must
get the same name in every op key, or equal work runs twice: ``canonical_model`` maps
each alias to one id (``all-MiniLM-L6-v2`` → ``sentence-transformers/all-MiniLM-L6-v2``)
and writes a path in its normal form.

A local directory is a path on the workers, so a tenant must not be able to name any
path it likes: only directories under the configured roots (setting ``model_roots``,
default the worker's model directory) are models. ``check_model_path`` refuses the
others at submission, lexically (the control plane never looks at the workers' disks),
and the worker checks again against its resolved roots (docs/isolation.md, "Models").
Its error names the models there are and nothing about any machine's filesystem, so it
is no oracle for which paths exist.

This module must never touch the filesystem: it decides from strings alone.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

from flowmesh_core.errors import UnknownModelError
from flowmesh_core.models import ModelRef
from flowmesh_core.settings import Settings

__all__ = [
    "BUILTIN_MODELS",
    "MODEL_ALIASES",
    "canonical_model",
    "check_model_path",
    "is_path_name",
    "managed_entry",
    "model_roots",
    "unknown_model",
    "worker_model_dir",
]

MINILM = "sentence-transformers/all-MiniLM-L6-v2"

BUILTIN_MODELS: tuple[str, ...] = (MINILM, "flowmesh/tiny-gpt", "flowmesh/tiny-reward")
"""The models every worker can serve offline: the bundled all-MiniLM-L6-v2 and
FlowMesh's tiny random-weight models (built on first use)."""

MODEL_ALIASES: dict[str, str] = {"all-MiniLM-L6-v2": MINILM}
"""Other names of the built-in models, each mapped to its one id."""

_BY_LOWER = {name.lower(): name for name in (*BUILTIN_MODELS, *MODEL_ALIASES)}


def is_path_name(name: str) -> bool:
    """Whether ``name`` is written as a filesystem path rather than a model id."""
    if name.startswith(("/", "~", ".")) or "\\" in name:
        return True
    return any(part in {"", ".", ".."} for part in name.split("/"))


def canonical_model(ref: ModelRef) -> ModelRef:
    """The one name of the weights ``ref`` names: aliases (any letter case) folded into
    their id, a path in normal form (``//``, ``.`` and ``..`` resolved lexically, no
    trailing slash). A checkpoint digest is exact already."""
    if ref.name is None:
        return ref
    name = ref.name
    if is_path_name(name):
        canonical = posixpath.normpath(name)
    else:
        known = _BY_LOWER.get(name.lower(), name)
        canonical = MODEL_ALIASES.get(known, known)
    if canonical == name:
        return ref
    return ref.model_copy(update={"name": canonical})


def unknown_model(name: str) -> UnknownModelError:
    """The error for a model no worker may serve: the same words whatever the name."""
    return UnknownModelError(
        f"unknown model {name!r}. Models available: {', '.join(BUILTIN_MODELS)} (also "
        f"as {', '.join(MODEL_ALIASES)}); a Hugging Face id (org/name) that the workers "
        "hold in their offline cache; or a local directory under the model roots an "
        "operator configured (setting model_roots)"
    )


def check_model_path(ref: ModelRef | None, roots: Sequence[str]) -> None:
    """Refuse a model named by a path outside ``roots`` (UnknownModelError).

    Lexical: the path is normalised, never looked up; the worker resolves symlinks and
    checks again. Names that are not paths pass (workers look them up by id).
    """
    if ref is None or ref.name is None or not is_path_name(ref.name):
        return
    path = posixpath.normpath(ref.name)
    if ref.name.startswith("~") or not posixpath.isabs(path) or not _under(path, roots):
        raise unknown_model(ref.name)


MANAGED_PREFIXES = ("ckpt-", ".")
"""Entries of a model root that FlowMesh itself writes there (checkpoints unpacked by
digest, work directories) and a path must never name: a checkpoint is used only by its
digest, after the rights check (docs/isolation.md, "Models")."""


def managed_entry(first: str) -> bool:
    """Whether ``first``, a path's first part under its root, is FlowMesh's own."""
    return first.startswith(MANAGED_PREFIXES)


def _under(path: str, roots: Sequence[str]) -> bool:
    for root in roots:
        top = posixpath.normpath(root).rstrip("/") + "/"
        if path.startswith(top) and path != top.rstrip("/"):
            return not managed_entry(path[len(top) :].split("/")[0])
    return False


def worker_model_dir(settings: Settings) -> Path:
    """Where a worker builds and unpacks models (``worker_model_dir``, default
    ``$XDG_CACHE_HOME/flowmesh/models``, i.e. ``~/.cache/flowmesh/models``)."""
    if settings.worker_model_dir:
        return Path(settings.worker_model_dir).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "flowmesh" / "models"


def model_roots(settings: Settings) -> tuple[str, ...]:
    """The directories local models may lie under: ``model_roots``, or else the
    worker's model directory."""
    if settings.model_roots:
        return tuple(str(Path(root).expanduser()) for root in settings.model_roots)
    return (str(worker_model_dir(settings)),)
