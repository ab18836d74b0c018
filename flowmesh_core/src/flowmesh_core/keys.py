"""Op keys and item decomposition.

The op key is the sha256 (hex) of an operator's canonical form: sorted-key JSON of its
kind, version, model reference, key params and the digests of its inputs. Equal keys mean
the same result, so this module decides what FlowMesh de-duplicates; change it and every
cached result is orphaned.

A batchable operator over a list becomes one item per element (and, for sampled kinds,
per sample). An item's key is built from the element's own digest, never from the list it
came in, so two tenants whose datasets overlap share the items they have in common. The
parent's key covers the whole list; its result is a manifest of the item digests.

This module must never depend on who asks: tenants, dedup domains and salts for opted-out
requests are applied by the caller, outside the canonical form of shared work.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowmesh_core.errors import InputTooLargeError, InvalidOperatorError
from flowmesh_core.hashing import canonical_json, digest_value, validate_digest
from flowmesh_core.models import BlobInput, Item, LiteralInput, Operator
from flowmesh_core.registry import KindSpec, Registry

__all__ = ["Expansion", "expand", "key_of"]

BlobLoader = Callable[[str], Any]
"""Reads a JSON blob by digest; used to split a list that was passed as a blob."""


def key_of(canonical: dict[str, Any]) -> str:
    """The op key of a canonical form: 64 hex digits."""
    return hashlib.sha256(canonical_json(canonical)).hexdigest()


@dataclass(frozen=True)
class Expansion:
    """An operator resolved against its kind: its key, its normalized params and its items.

    ``batched`` operators split into one item per element (and sample); for kinds that
    run whole, ``items`` holds one item whose key is the operator's own ``op_key``.
    """

    op_key: str
    kind: str
    version: str
    params: dict[str, Any]
    signature: str
    items: tuple[Item, ...]
    salt: str | None
    batched: bool


def expand(
    op: Operator,
    registry: Registry,
    *,
    max_inline_bytes: int,
    salt: str | None = None,
    load_blob: BlobLoader | None = None,
) -> Expansion:
    """Validate ``op`` against its kind and compute its key and its items' keys.

    Raises UnknownKindError, InvalidParamsError, InvalidOperatorError or
    InputTooLargeError, each naming what to fix. With ``op.dedup`` false and no ``salt``,
    a fresh random salt keeps the work private to this request.
    """
    spec = registry.get(op.kind)
    version = _version(spec, op)
    if spec.needs_model and op.model is None:
        raise InvalidOperatorError(f"kind {spec.kind!r} needs a model (set 'model:')")
    spec.check_inputs(op.inputs)
    params = spec.normalize_params(op.params)
    key_params = spec.key_params(params)
    if not op.dedup and salt is None:
        salt = uuid.uuid4().hex
    digests = {name: _input_digest(name, inp, max_inline_bytes) for name, inp in op.inputs.items()}
    base = {
        "kind": spec.kind,
        "version": version,
        "model": op.model.canonical() if op.model else None,
    }
    # The salt keeps opted-out work private, yet it may still share a batch.
    signature = key_of({**base, "form": "signature", "params": spec.signature_params(key_params)})
    if salt is not None:
        base["salt"] = salt
    op_key = key_of({**base, "form": "operator", "params": key_params, "inputs": digests})
    if spec.batch_input is None:
        whole = Item(
            op_key=op_key,
            signature=signature,
            kind=spec.kind,
            version=version,
            model=op.model,
            params=params,
            inputs={name: _input_value(inp) for name, inp in op.inputs.items()},
            input_digests=digests,
        )
        return Expansion(op_key, spec.kind, version, params, signature, (whole,), salt, False)
    elements = _elements(spec, op.inputs[spec.batch_input], load_blob)
    items = _items(spec, op, base, version, params, key_params, digests, elements, signature)
    return Expansion(op_key, spec.kind, version, params, signature, items, salt, True)


def _input_value(inp: LiteralInput | BlobInput) -> Any:
    return inp.value if isinstance(inp, LiteralInput) else {"blob": inp.blob}


def _version(spec: KindSpec, op: Operator) -> str:
    if spec.version is None:
        if op.version is None:
            raise InvalidOperatorError(
                f"kind {spec.kind!r} needs an explicit 'version' (for python: the source "
                "hash of the function, which the client SDK computes)"
            )
        return op.version
    if op.version is not None and op.version != spec.version:
        raise InvalidOperatorError(
            f"kind {spec.kind!r} is at version {spec.version!r}; this control plane cannot "
            f"run version {op.version!r} (drop 'version' to use the current one)"
        )
    return spec.version


def _input_digest(name: str, inp: LiteralInput | BlobInput, limit: int) -> str:
    if isinstance(inp, BlobInput):
        return inp.blob
    size = len(canonical_json(inp.value))
    if size > limit:
        raise InputTooLargeError(
            f"input {name!r} is {size:,} bytes inline, over the {limit:,}-byte limit: store "
            f"it with `flowmesh cas put FILE` and pass {{blob: <digest>}} instead"
        )
    return digest_value(inp.value)


def _elements(
    spec: KindSpec, inp: LiteralInput | BlobInput, load_blob: BlobLoader | None
) -> list[tuple[Any, str]]:
    """Each element of the list input with its digest.

    A manifest (``{"manifest": [digest, ...]}``: the output of another split node) gives
    its elements by digest, as ``{"blob": digest}``: their bytes stay in the CAS, and
    their keys equal those of the same values written inline.
    """
    name = spec.batch_input
    if isinstance(inp, BlobInput):
        if load_blob is None:
            raise InvalidOperatorError(
                f"input {name!r} is a blob; splitting it into items needs the blob store"
            )
        value = load_blob(inp.blob)
    else:
        value = inp.value
    if isinstance(value, dict) and set(value) == {"manifest"}:
        return [({"blob": validate_digest(d)}, d) for d in value["manifest"]]
    if not isinstance(value, list):
        raise InvalidOperatorError(
            f"kind {spec.kind!r}: input {name!r} must be a list (one item per element), "
            f"got {type(value).__name__}"
        )
    return [(element, digest_value(element)) for element in value]


def _items(
    spec: KindSpec,
    op: Operator,
    base: dict[str, Any],
    version: str,
    params: dict[str, Any],
    key_params: dict[str, Any],
    digests: dict[str, str],
    elements: list[tuple[Any, str]],
    signature: str,
) -> tuple[Item, ...]:
    assert spec.batch_input is not None
    batch_input = spec.batch_input
    sampled = spec.stochastic(params)
    samples = int(params[spec.samples_param]) if sampled and spec.samples_param else 1
    item_params = {k: v for k, v in key_params.items() if k != spec.samples_param}
    shared = {name: _input_value(inp) for name, inp in op.inputs.items() if name != batch_input}
    items = []
    for index, (element, element_digest) in enumerate(elements):
        input_digests = {**digests, batch_input: element_digest}
        for sample in range(samples):
            canonical = {**base, "form": "item", "params": item_params, "inputs": input_digests}
            if sampled:
                canonical["sample"] = sample
            items.append(
                Item(
                    op_key=key_of(canonical),
                    signature=signature,
                    kind=spec.kind,
                    version=version,
                    model=op.model,
                    params=params,
                    inputs={**shared, batch_input: element},
                    input_digests=input_digests,
                    sample_index=sample if sampled else None,
                    index=index,
                )
            )
    return tuple(items)
