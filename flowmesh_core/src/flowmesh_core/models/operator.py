"""Operators as submitted: kind, version, model reference, params and inputs.

An input is written in one of three forms; anything else is a literal value:

    texts: ["a", "b"]              # a literal (any JSON value)
    texts: {value: {"blob": 1}}    # a literal that would otherwise look like a reference
    texts: {blob: "sha256:..."}    # a blob in the CAS
    texts: {ref: generate}         # another node's output (workflows only)

These models only check shape. Whether a kind exists and what its params mean is the
registry's business (``flowmesh_core.registry``); keys are computed in ``flowmesh_core.keys``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, JsonValue, Tag, field_validator, model_validator

from flowmesh_core.models._base import Digest, FrozenModel, Name

__all__ = [
    "BlobInput",
    "LiteralInput",
    "ModelRef",
    "NodeRef",
    "Operator",
    "OperatorInput",
    "WorkflowInput",
]


class ModelRef(FrozenModel):
    """Which weights: a named model (with an optional revision) or a checkpoint in the CAS.

    Written as a plain string in files: ``all-MiniLM-L6-v2`` names a model,
    ``sha256:...`` names a checkpoint blob.
    """

    name: str | None = Field(default=None, min_length=1, max_length=512)
    revision: str | None = Field(default=None, min_length=1, max_length=256)
    digest: Digest | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"digest": value} if value.startswith("sha256:") else {"name": value}
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ModelRef:
        if (self.name is None) == (self.digest is None):
            raise ValueError("a model names either 'name' (and optional 'revision') or 'digest'")
        if self.digest is not None and self.revision is not None:
            raise ValueError("'revision' goes with 'name'; a checkpoint 'digest' is exact already")
        return self

    @property
    def key(self) -> str:
        """One string naming these weights: the digest, or ``name`` / ``name@revision``.

        Workers report warm models by it and the scheduler matches them by it.
        """
        if self.digest is not None:
            return self.digest
        return f"{self.name}@{self.revision}" if self.revision else str(self.name)

    def canonical(self) -> dict[str, str]:
        """The form that enters op keys: only the fields that are set."""
        return self.model_dump(exclude_none=True)


class LiteralInput(FrozenModel):
    """A JSON value given inline."""

    value: JsonValue


class BlobInput(FrozenModel):
    """A blob already in the CAS, by digest."""

    blob: Digest


class NodeRef(FrozenModel):
    """The output of another node of the same workflow."""

    ref: Name


_FORMS: dict[str, type[FrozenModel]] = {"value": LiteralInput, "blob": BlobInput, "ref": NodeRef}


def _form(value: Any) -> str:
    if isinstance(value, dict):
        return "value" if len(value) != 1 else next(iter(value))
    forms: dict[type, str] = {LiteralInput: "value", BlobInput: "blob", NodeRef: "ref"}
    return forms.get(type(value), "value")


OperatorInput = Annotated[
    Annotated[LiteralInput, Tag("value")] | Annotated[BlobInput, Tag("blob")],
    Discriminator(_form),
]
WorkflowInput = Annotated[
    Annotated[LiteralInput, Tag("value")]
    | Annotated[BlobInput, Tag("blob")]
    | Annotated[NodeRef, Tag("ref")],
    Discriminator(_form),
]


def wrap_input(raw: Any, *, allow_refs: bool) -> Any:
    """The written form of one input, made explicit (see the module docstring).

    Returns a ``{value|blob|ref: ...}`` mapping (or a model) for pydantic to validate,
    so that errors keep the input's name in their location.
    """
    if isinstance(raw, LiteralInput | BlobInput | NodeRef):
        return raw
    if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in _FORMS:
        if "ref" in raw and not allow_refs:
            raise ValueError("{ref: ...} inputs exist only inside a workflow")
        return raw
    return {"value": raw}


class Operator(FrozenModel):
    """One unit of work as a client writes it. ``version`` defaults to the kind's current one.

    ``dedup: false`` opts this operator out of sharing: its key then carries a
    per-request salt, so it never matches anyone else's work.
    """

    kind: str = Field(min_length=1, max_length=128)
    version: str | None = Field(default=None, min_length=1, max_length=128)
    model: ModelRef | None = None
    params: dict[str, JsonValue] = Field(default_factory=dict)
    inputs: dict[Name, OperatorInput] = Field(default_factory=dict)
    dedup: bool = True

    @field_validator("inputs", mode="before")
    @classmethod
    def _wrap_inputs(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: wrap_input(raw, allow_refs=False) for name, raw in value.items()}
        return value
