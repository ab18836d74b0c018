"""Checkpoints between a worker's disk and the CAS (the tree format: ``flowmesh_core.checkpoint``).

``hash_directory`` lists a trained model directory as path -> digest, reading each file
in chunks; the worker then stores each file with ``put_file`` (streamed; the S3 backend
switches to multipart for big files) and the tree last, so a tree is never stored before
the files it names.

``materialise`` does the reverse for a checkpoint used as a ``model``: every file is
streamed from the CAS into a private staging directory under the model directory and
verified against its digest on the way (a corrupt file is a CorruptBlobError naming the
checkpoint and the file, never weights), then the directory is published with one
``os.rename`` under the checkpoint's digest, where later batches find it without another
download. A LoRA checkpoint is materialised as its base with the adapter merged in, so
every executor (transformers or vLLM) loads it like any full model. A worker that trained
a full checkpoint publishes its own output directory there the same way once stored
(``BatchRunner.store``), so it holds what it trained without fetching it back.

This module reads only what the tree lists, and only after the control plane checked the
requester's right to the checkpoint (docs/training.md). It must never publish a
directory that is not complete and verified.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from flowmesh_core.blobs import BlobStore
from flowmesh_core.blobs.base import DEFAULT_CHUNK_SIZE, StreamHasher
from flowmesh_core.checkpoint import Tree, check_file_path, model_tree
from flowmesh_core.errors import (
    BlobNotFoundError,
    CorruptBlobError,
    InvalidOperatorError,
    NotFoundError,
)
from flowmesh_core.hashing import hex_of
from flowmesh_core.models import ModelRef

__all__ = [
    "HELD_REPORTED",
    "Pin",
    "checkpoint_dir",
    "fetch_tree",
    "hash_directory",
    "held",
    "materialise",
    "merge_adapter",
    "on_disk",
    "publish",
]

log = logging.getLogger(__name__)

ResolveBase = Callable[[ModelRef], Path]
Pin = Callable[[str | None], AbstractContextManager[None]]

HELD_REPORTED = 32
"""How many materialised checkpoints a worker reports in its heartbeat (the most recent)."""
_PREFIX = "ckpt-"


def hash_directory(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` by relative POSIX path, with its digest (streamed)."""
    files: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_dir():
            continue
        rel = check_file_path(path.relative_to(directory).as_posix())
        hasher = StreamHasher()
        with path.open("rb") as handle:
            while chunk := handle.read(DEFAULT_CHUNK_SIZE):
                hasher.update(chunk)
        files[rel] = hasher.digest
    return files


def checkpoint_dir(digest: str, model_dir: Path) -> Path:
    """Where the checkpoint ``digest`` lives on this worker once materialised."""
    return model_dir / f"{_PREFIX}{hex_of(digest)}"


def held(model_dir: Path, limit: int = HELD_REPORTED) -> list[str]:
    """The digests of the checkpoints materialised under ``model_dir``, most recently
    used first, at most ``limit`` (what the worker reports for the scheduler's locality
    term: docs/architecture.md, "Data locality")."""
    return [digest for digest, _ in reversed(on_disk(model_dir))][:limit]


def on_disk(model_dir: Path) -> list[tuple[str, Path]]:
    """(digest, directory) of each checkpoint under ``model_dir``, least recently used
    first (a use touches the directory's mtime)."""
    found = []
    try:
        for entry in model_dir.iterdir():
            if entry.name.startswith(_PREFIX) and entry.is_dir():
                with contextlib.suppress(OSError):  # removed meanwhile
                    found.append((entry.stat().st_mtime, entry.name, entry))
    except OSError:  # no model directory yet
        return []
    found.sort()
    return [(f"sha256:{name.removeprefix(_PREFIX)}", path) for _, name, path in found]


def materialise(
    digest: str,
    *,
    blobs: BlobStore,
    model_dir: Path,
    resolve_base: ResolveBase,
    pin: Pin | None = None,
) -> Path:
    """The local directory of the checkpoint ``digest``, fetched and verified on first use.

    ``resolve_base`` turns a LoRA checkpoint's base into a local directory (a named
    model, or another checkpoint, materialised the same way); a base that is a
    checkpoint is held with ``pin`` (``CheckpointDisk.using``) while it is merged.
    Raises NotFoundError for a digest the CAS does not hold, InvalidOperatorError for a
    blob that is no checkpoint, CorruptBlobError for a file whose bytes do not match the
    tree.
    """
    target = checkpoint_dir(digest, model_dir)
    if target.is_dir():
        with contextlib.suppress(OSError):  # its use makes it the most recent (``held``)
            os.utime(target)
        return target
    tree = _read(digest, blobs)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".fetch-{target.name}-", dir=model_dir))
    try:
        files_at = staging / "adapter" if tree.format == "lora" else staging
        _fetch_files(digest, tree, blobs, files_at)
        if tree.format == "lora":
            assert tree.base is not None  # parse_tree refuses a LoRA tree without one
            with pin(tree.base.digest) if pin else contextlib.nullcontext():
                merge_adapter(resolve_base(tree.base), files_at, staging)
            shutil.rmtree(files_at)
        publish(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("materialised checkpoint %s into %s", digest, target)
    return target


def _read(digest: str, blobs: BlobStore) -> Tree:
    try:
        data = blobs.get_bytes(digest)
    except BlobNotFoundError as exc:
        raise NotFoundError(f"model {digest} is not in the CAS") from exc
    return model_tree(digest, data)


def fetch_tree(digest: str, tree: Tree, blobs: BlobStore, into: Path) -> None:
    """Every file of ``tree`` into the directory ``into``, each verified as it streams."""
    _fetch_files(digest, tree, blobs, into)


def _fetch_files(digest: str, tree: Tree, blobs: BlobStore, into: Path) -> None:
    root = into.resolve()
    for rel, file_digest in sorted(tree.files.items()):
        dest = into / rel
        if not dest.resolve().is_relative_to(root):  # check_file_path makes this impossible
            raise InvalidOperatorError(f"checkpoint {digest}: file {rel!r} leaves its directory")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            blobs.get_to_file(file_digest, dest)
        except CorruptBlobError as exc:
            raise CorruptBlobError(f"checkpoint {digest}, file {rel!r}: {exc}") from exc
        except BlobNotFoundError as exc:
            raise NotFoundError(
                f"checkpoint {digest}, file {rel!r}: blob {file_digest} is missing from the CAS"
            ) from exc


def merge_adapter(base: Path, adapter: Path, out: Path) -> None:
    """Save ``base`` with the LoRA ``adapter`` merged in, and the adapter's tokenizer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base), local_files_only=True)
    with warnings.catch_warnings():
        # PEFT reads a property that this transformers release renamed (its own warning).
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(adapter), local_files_only=True).save_pretrained(str(out))


def publish(staging: Path, target: Path) -> None:
    """Move the complete directory ``staging`` to ``target`` in one rename (its files
    synced first); a ``target`` another process published first is kept. OSError when
    the rename is impossible (another filesystem)."""
    for path in staging.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    staging.chmod(0o755)
    try:
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():  # another process published the same checkpoint first
            raise
