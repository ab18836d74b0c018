"""The operator-kind registry: what each kind accepts and how its work splits and batches.

A kind declares its params (a pydantic model: defaults filled in, types checked), its
inputs, which list input splits into items, which params may differ between items of one
batch, and which params cannot change its result (so they stay out of the key). The
scheduler and the key code ask the registry; nothing else knows a kind by name.

The registry never imports an executor: workers register how to *run* a kind on their
side; this module says only what a kind *is*.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from flowmesh_core.errors import InvalidOperatorError, InvalidParamsError, UnknownKindError

__all__ = ["KindSpec", "Registry"]

Params = dict[str, Any]


def _identity(params: Params) -> Params:
    return params


def _never(params: Params) -> bool:
    return False


@dataclass(frozen=True)
class KindSpec:
    """What one operator kind is.

    - ``version``: the current implementation version; ``None`` means the caller must
      supply one (``python``: the function's source hash).
    - ``batch_input``: the list input that splits into one item per element; ``None``
      for kinds that run whole (``data.top_k`` needs the entire list).
    - ``per_item_params``: params that may differ between items of one batch. Every
      param is part of the op key; only the others form the batch signature.
    - ``key_params``: drops params that cannot change the result (``seed`` under
      greedy decoding), so equivalent requests share a key.
    - ``stochastic`` and ``samples_param``: a sampled kind asks for ``params[samples_param]``
      distinct samples per element; each sample is its own item, keyed by seed and index.
    - ``weight_input``: for a kind that runs whole over a dataset (``train.*``), the input
      whose length, times ``params["epochs"]`` (1 if it has none), is the units of work its
      item stands for (the utility's item weight). That input's digest joins the batch
      signature, so each run is its own group and its weight is exact.
    """

    kind: str
    version: str | None
    params_model: type[BaseModel]
    required_inputs: frozenset[str] = frozenset()
    optional_inputs: frozenset[str] = frozenset()
    open_inputs: bool = False
    batch_input: str | None = None
    per_item_params: frozenset[str] = frozenset()
    needs_model: bool = False
    key_params: Callable[[Params], Params] = field(default=_identity)
    stochastic: Callable[[Params], bool] = field(default=_never)
    samples_param: str | None = None
    weight_input: str | None = None
    description: str = ""

    def normalize_params(self, raw: Mapping[str, Any]) -> Params:
        """Validated params with defaults filled in, as plain JSON values."""
        try:
            model = self.params_model.model_validate(dict(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"params{''.join('.' + str(p) for p in err['loc'])}: "
                + err["msg"].removeprefix("Value error, ")
                for err in exc.errors()
            )
            raise InvalidParamsError(f"kind {self.kind!r}: {problems}") from exc
        return model.model_dump(mode="json")

    def check_inputs(self, names: Iterable[str]) -> None:
        """Raise InvalidOperatorError naming the input that is missing or unexpected."""
        given = set(names)
        missing = sorted(self.required_inputs - given)
        if missing:
            raise InvalidOperatorError(
                f"kind {self.kind!r} needs input {missing[0]!r} "
                f"(it takes: {', '.join(sorted(self.required_inputs | self.optional_inputs))})"
            )
        if self.open_inputs:
            return
        unknown = sorted(given - self.required_inputs - self.optional_inputs)
        if unknown:
            raise InvalidOperatorError(
                f"kind {self.kind!r} has no input {unknown[0]!r} "
                f"(it takes: {', '.join(sorted(self.required_inputs | self.optional_inputs))})"
            )

    def signature_params(self, key_params: Params) -> Params:
        """The params that every item of one batch must share."""
        excluded = self.per_item_params | {self.samples_param}
        return {k: v for k, v in key_params.items() if k not in excluded}


class Registry:
    """Kinds by name. ``Registry.default()`` holds the built-in kinds."""

    def __init__(self, specs: Iterable[KindSpec] = ()) -> None:
        self._specs: dict[str, KindSpec] = {}
        for spec in specs:
            self.register(spec)

    @classmethod
    def default(cls) -> Registry:
        """A registry with FlowMesh's built-in kinds."""
        from flowmesh_core.builtin_kinds import BUILTIN_KINDS

        return cls(BUILTIN_KINDS)

    def register(self, spec: KindSpec) -> None:
        """Add a kind; registering a name twice is a programming error."""
        if spec.kind in self._specs:
            raise ValueError(f"kind {spec.kind!r} is already registered")
        self._specs[spec.kind] = spec

    def get(self, kind: str) -> KindSpec:
        """The spec for ``kind``; UnknownKindError lists the kinds that exist."""
        try:
            return self._specs[kind]
        except KeyError:
            known = ", ".join(sorted(self._specs))
            raise UnknownKindError(
                f"unknown operator kind {kind!r}; known kinds: {known}"
            ) from None

    def kinds(self) -> list[str]:
        """Registered kind names, sorted."""
        return sorted(self._specs)
