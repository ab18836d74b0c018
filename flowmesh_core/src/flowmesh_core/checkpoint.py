"""Checkpoints: a trained model directory stored in the CAS as a tree of file blobs.

A tree is the canonical JSON of::

    {"checkpoint": {"format": "full" | "lora",
                    "files": {"config.json": "sha256:...", ...},
                    "base": null | {"name": ...} | {"digest": ...}},
     "metrics": {...}}

Each file of the directory is its own blob (streamed in and out, never whole in memory);
the tree's digest is the checkpoint's address, the result of a ``train.*`` item and a
valid ``model`` for later operators. A ``lora`` tree holds only an adapter and names the
model it was trained on in ``base``; a ``full`` tree is a complete model (``base`` then
says what it was fine-tuned from, for lineage). A ``resume`` tree is a training run's
intermediate state (weights, optimizer, scheduler, step), from which a reclaimed run
resumes; it is never a model.

This module only writes and recognises the format. It must never read a digest a tree
lists (that is a read the caller checks against the requester's rights first), and it
refuses any file path that could leave the directory it is unpacked into.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pydantic import ValidationError

from flowmesh_core.errors import InvalidDigestError, InvalidInputError, InvalidOperatorError
from flowmesh_core.hashing import canonical_json, validate_digest
from flowmesh_core.models import ModelRef

__all__ = ["Tree", "build_tree", "check_file_path", "model_tree", "parse_tree", "read_tree"]

_FIELD = "checkpoint"
_FORMATS = ("full", "lora", "resume")
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}")
_MAX_FILES = 4096

Format = Literal["full", "lora", "resume"]


@dataclass(frozen=True)
class Tree:
    """A checkpoint as its tree describes it."""

    format: Format
    files: Mapping[str, str]
    base: ModelRef | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)

    @property
    def digests(self) -> tuple[str, ...]:
        """Every blob a reader of this checkpoint reads (its files), in path order."""
        return tuple(self.files[path] for path in sorted(self.files))


def check_file_path(path: str) -> str:
    """``path`` if it is a relative path of plain names (``a/b.json``); else InvalidInputError.

    No absolute paths, no ``..``, no hidden or empty parts, no backslashes: a tree is
    tenant-supplied data, and its paths become files on a worker's disk.
    """
    parts = path.split("/")
    if not path or len(path) > 1024 or not all(_PART.fullmatch(p) for p in parts):
        raise InvalidInputError(
            f"checkpoint file path {path!r} is not a relative path of plain names "
            "(letters, digits, '_', '.', '+', '-'; no leading '.', no '..')"
        )
    return path


def build_tree(
    files: Mapping[str, str],
    *,
    format: Format,
    base: ModelRef | None,
    metrics: Mapping[str, Any] | None = None,
) -> bytes:
    """The bytes of the tree listing ``files`` (path -> digest); canonical JSON, so the
    same checkpoint always has the same digest."""
    if not files:
        raise InvalidInputError("a checkpoint needs at least one file")
    body = {
        "format": format,
        "files": {check_file_path(p): validate_digest(d) for p, d in sorted(files.items())},
        "base": base.canonical() if base is not None else None,
    }
    return canonical_json({_FIELD: body, "metrics": dict(metrics or {})})


def parse_tree(value: Any) -> Tree | None:
    """The tree ``value`` (a decoded JSON value) is, or None if it is no checkpoint.

    A value shaped like a tree but malformed (a bad path or digest, an unknown format)
    raises InvalidInputError rather than passing for an ordinary value.
    """
    if not (isinstance(value, dict) and _FIELD in value and set(value) <= {_FIELD, "metrics"}):
        return None
    body = value[_FIELD]
    if not isinstance(body, dict) or set(body) != {"format", "files", "base"}:
        raise InvalidInputError('a checkpoint tree needs exactly "format", "files" and "base"')
    fmt, files, base = body["format"], body["files"], body["base"]
    if fmt not in _FORMATS:
        raise InvalidInputError(f"checkpoint format {fmt!r} is not one of {_FORMATS}")
    if not isinstance(files, dict) or not files or len(files) > _MAX_FILES:
        raise InvalidInputError(f"a checkpoint lists 1 to {_MAX_FILES} files by path")
    try:
        checked = {check_file_path(str(p)): validate_digest(d) for p, d in files.items()}
        ref = None if base is None else ModelRef.model_validate(base)
    except (InvalidDigestError, ValidationError) as exc:
        raise InvalidInputError(f"malformed checkpoint tree: {exc}") from exc
    if fmt == "lora" and ref is None:
        raise InvalidInputError("a LoRA checkpoint must name its base model")
    metrics = value.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise InvalidInputError("checkpoint metrics must be an object")
    return Tree(format=cast(Format, fmt), files=checked, base=ref, metrics=metrics)


def read_tree(data: bytes) -> Tree:
    """The tree in ``data``; InvalidInputError if the bytes are no checkpoint."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        value = None
    tree = parse_tree(value)
    if tree is None:
        raise InvalidInputError(
            "not a checkpoint: a model digest must name the result of a train.* operator "
            '(a {"checkpoint": ...} tree)'
        )
    return tree


def model_tree(digest: str, data: bytes) -> Tree:
    """The checkpoint ``digest`` (its bytes ``data``) as a model: InvalidOperatorError,
    naming the digest, when the bytes are no checkpoint or a training run's resume state.
    The control plane (at submission) and the worker (before unpacking) ask the same."""
    try:
        tree = read_tree(data)
    except InvalidInputError as exc:
        raise InvalidOperatorError(f"model {digest}: {exc}") from exc
    if tree.format == "resume":
        raise InvalidOperatorError(
            f"model {digest}: not a checkpoint but a training run's intermediate state"
        )
    return tree
