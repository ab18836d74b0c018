"""Op keys and item decomposition.

The op key is the sha256 (hex) of an operator's canonical form: sorted-key JSON of its
kind, version, model reference, key params and the digests of its inputs. Equal keys mean
the same result, so this module decides what FlowMesh de-duplicates; change it and every
cached result is orphaned.

A batchable operator over a list becomes one item per element (and, for sampled kinds,
per sample). An item's key is built from the element's own digest, never from the list it
came in, so two tenants whose datasets overlap share the items they have in common. The
parent's key covers the whole list; its result is a manifest of the item digests.

Items carry typed inputs (``flowmesh_core.models.item_inputs``): a literal, wherever it
sits, stays a literal, and a blob is typed a manifest only after this module has read it
and listed the digests it names (``Expansion.manifest_digests``) for the caller to check.

This module must never depend on who asks: tenants, dedup domains and salts for opted-out
requests are applied by the caller, outside the canonical form of shared work.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowmesh_core.errors import BlobNotFoundError, InputTooLargeError, InvalidOperatorError
from flowmesh_core.hashing import canonical_json, digest_value
from flowmesh_core.manifest import is_manifest, parse_manifest
from flowmesh_core.model_names import canonical_model
from flowmesh_core.models import (
    BlobInput,
    Item,
    ItemBlob,
    ItemInput,
    ItemLiteral,
    ItemManifest,
    LiteralInput,
    Operator,
)
from flowmesh_core.registry import KindSpec, Registry

__all__ = ["Expansion", "expand", "key_of"]

BlobLoader = Callable[[str], Any]
"""Reads a JSON blob by digest: to split a list passed as a blob, and to tell a manifest."""

Manifests = dict[str, tuple[str, ...]]
"""Each manifest an expansion read, by digest, with the digests it lists."""


def key_of(canonical: dict[str, Any]) -> str:
    """The op key of a canonical form: 64 hex digits."""
    return hashlib.sha256(canonical_json(canonical)).hexdigest()


@dataclass(frozen=True)
class Expansion:
    """An operator resolved against its kind: its key, its normalized params and its items.

    ``batched`` operators split into one item per element (and sample); for kinds that
    run whole, ``items`` holds one item whose key is the operator's own ``op_key``.

    ``manifests`` maps each manifest this expansion read to the digests it lists: a split
    input given as a manifest (its elements become blob inputs) or a blob input holding
    one (it becomes a manifest input). Workers read every listed digest, so the caller
    checks them (``manifest_digests``) against the requester's rights, as it checks the
    operator's own ``referenced_blobs``.
    """

    op_key: str
    kind: str
    version: str
    params: dict[str, Any]
    signature: str
    items: tuple[Item, ...]
    salt: str | None
    batched: bool
    manifests: Manifests = field(default_factory=dict)

    @property
    def manifest_digests(self) -> tuple[str, ...]:
        """Every digest the manifests list, once each, in order: what workers will read."""
        return tuple(dict.fromkeys(d for listed in self.manifests.values() for d in listed))


@dataclass(frozen=True)
class _Form:
    """What every item of one operator shares: its kind, canonical base and digests."""

    spec: KindSpec
    op: Operator
    base: dict[str, Any]
    version: str
    params: dict[str, Any]
    key_params: dict[str, Any]
    digests: dict[str, str]
    signature: str


def expand(
    op: Operator,
    registry: Registry,
    *,
    max_inline_bytes: int,
    salt: str | None = None,
    load_blob: BlobLoader | None = None,
    batch_scope: str | None = None,
) -> Expansion:
    """Validate ``op`` against its kind and compute its key and its items' keys.

    ``batch_scope``, when given, is part of the batch signature only (never of a key):
    items of different scopes never share a batch. Under the ``tenant`` dedup domain the
    control plane passes the requester's domain, so nothing about a tenant's batch (its
    size, its time, the item's charge) depends on another tenant's items
    (docs/isolation.md, "Batches under the tenant domain").

    Raises UnknownKindError, InvalidParamsError, InvalidOperatorError or
    InputTooLargeError, each naming what to fix. With ``op.dedup`` false and no ``salt``,
    a fresh random salt keeps the work private to this request. ``load_blob`` reads the
    blob inputs: a split input passed as a blob needs it; without it, every other blob
    input stays a plain blob (never followed as a manifest).
    """
    spec = registry.get(op.kind)
    if op.model is not None:
        # Aliases of one model get one key (flowmesh_core.model_names).
        op = op.model_copy(update={"model": canonical_model(op.model)})
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
    grouped: dict[str, Any] = {"params": spec.signature_params(key_params)}
    if spec.weight_input is not None and spec.weight_input in digests:
        grouped["input"] = digests[spec.weight_input]  # one run per group: exact weights
    if batch_scope is not None:
        grouped["scope"] = batch_scope
    signature = key_of({**base, "form": "signature", **grouped})
    if salt is not None:
        base["salt"] = salt
    op_key = key_of({**base, "form": "operator", "params": key_params, "inputs": digests})
    form = _Form(spec, op, base, version, params, key_params, digests, signature)
    batched = spec.batch_input is not None
    items, manifests = (_split if batched else _whole)(form, op_key, load_blob)
    return Expansion(op_key, spec.kind, version, params, signature, items, salt, batched, manifests)


def _whole(
    form: _Form, op_key: str, load_blob: BlobLoader | None
) -> tuple[tuple[Item, ...], Manifests]:
    """The one item of a kind that runs whole, and the manifests it reads."""
    typed = {name: _item_input(inp, load_blob) for name, inp in form.op.inputs.items()}
    item = Item(
        op_key=op_key,
        signature=form.signature,
        kind=form.spec.kind,
        version=form.version,
        model=form.op.model,
        params=form.params,
        inputs={name: item_input for name, (item_input, _) in typed.items()},
        input_digests=form.digests,
        weight=_weight(form, load_blob),
    )
    return (item,), {k: v for _, read in typed.values() for k, v in read.items()}


def _weight(form: _Form, load_blob: BlobLoader | None) -> float:
    """Elements of the kind's ``weight_input`` times its ``epochs`` (``KindSpec.weight_input``);
    1 where that is not known here (a blob this expansion cannot read)."""
    name = form.spec.weight_input
    inp = form.op.inputs.get(name) if name is not None else None
    if inp is None:
        return 1.0
    value: Any = None
    if isinstance(inp, LiteralInput):
        value = inp.value
    elif load_blob is not None:
        try:
            value = load_blob(inp.blob)
        except (BlobNotFoundError, ValueError):
            value = None
        listed = parse_manifest(value)
        value = listed if listed is not None else value
    count = len(value) if isinstance(value, list) else 1
    epochs = form.params.get("epochs", 1)
    return float(max(count, 1) * (epochs if isinstance(epochs, int) else 1))


def _split(
    form: _Form, op_key: str, load_blob: BlobLoader | None
) -> tuple[tuple[Item, ...], Manifests]:
    """One item per element (and sample), and the manifests they read."""
    batch_input = form.spec.batch_input
    assert batch_input is not None
    typed = {
        name: _item_input(inp, load_blob)
        for name, inp in form.op.inputs.items()
        if name != batch_input
    }
    shared = {name: item_input for name, (item_input, _) in typed.items()}
    elements, manifests = _elements(form.spec, form.op.inputs[batch_input], load_blob)
    for _, read in typed.values():
        manifests.update(read)
    return _items(form, batch_input, shared, elements), manifests


def _item_input(
    inp: LiteralInput | BlobInput, load_blob: BlobLoader | None
) -> tuple[ItemInput, Manifests]:
    """An input passed to an item whole, typed, with the manifest it is (if it is one).

    A blob is a manifest input only when this expansion read it and found a manifest;
    a blob it cannot read here (no loader, absent, not JSON) stays a plain blob, which
    the worker reads as one value and never follows.
    """
    if isinstance(inp, LiteralInput):
        return ItemLiteral(value=inp.value), {}
    listed = _manifest_in(inp.blob, load_blob)
    if listed is None:
        return ItemBlob(digest=inp.blob), {}
    return ItemManifest(digest=inp.blob), {inp.blob: tuple(listed)}


def _manifest_in(digest: str, load_blob: BlobLoader | None) -> list[str] | None:
    if load_blob is None:
        return None
    try:
        value = load_blob(digest)
    except (BlobNotFoundError, ValueError):
        return None  # absent, or not JSON: no manifest; the worker reports what it finds
    return parse_manifest(value)


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
) -> tuple[list[tuple[ItemInput, str]], Manifests]:
    """Each element of the split input, typed, with its digest; and the manifest read
    (none unless the list came as one).

    A list's elements are literals, whatever their shape, whether the list was written
    inline or stored as a blob. A manifest (the output of another split node, passed as a
    blob) gives its elements by digest, as blob inputs: their bytes stay in the CAS, and
    their keys equal those of the same values written inline. A manifest written inline
    is a literal like any other, and refused here since it is not a list.
    """
    name = spec.batch_input
    if isinstance(inp, BlobInput):
        if load_blob is None:
            raise InvalidOperatorError(
                f"input {name!r} is a blob; splitting it into items needs the blob store"
            )
        value = load_blob(inp.blob)
        listed = parse_manifest(value)
        if listed is not None:
            return [(ItemBlob(digest=d), d) for d in listed], {inp.blob: tuple(listed)}
    else:
        value = inp.value
    if not isinstance(value, list):
        hint = ""
        if isinstance(inp, LiteralInput) and is_manifest(value):
            hint = " (a literal is never read as a manifest: pass one as {blob: <digest>})"
        raise InvalidOperatorError(
            f"kind {spec.kind!r}: input {name!r} must be a list (one item per element), "
            f"got {type(value).__name__}{hint}"
        )
    return [(ItemLiteral(value=element), digest_value(element)) for element in value], {}


def _items(
    form: _Form,
    batch_input: str,
    shared: dict[str, ItemInput],
    elements: list[tuple[ItemInput, str]],
) -> tuple[Item, ...]:
    spec = form.spec
    sampled = spec.stochastic(form.params)
    samples = int(form.params[spec.samples_param]) if sampled and spec.samples_param else 1
    item_params = {k: v for k, v in form.key_params.items() if k != spec.samples_param}
    items = []
    for index, (element, element_digest) in enumerate(elements):
        input_digests = {**form.digests, batch_input: element_digest}
        for sample in range(samples):
            canonical = {
                **form.base,
                "form": "item",
                "params": item_params,
                "inputs": input_digests,
            }
            if sampled:
                canonical["sample"] = sample
            items.append(
                Item(
                    op_key=key_of(canonical),
                    signature=form.signature,
                    kind=spec.kind,
                    version=form.version,
                    model=form.op.model,
                    params=form.params,
                    inputs={**shared, batch_input: element},
                    input_digests=input_digests,
                    sample_index=sample if sampled else None,
                    index=index,
                )
            )
    return tuple(items)
