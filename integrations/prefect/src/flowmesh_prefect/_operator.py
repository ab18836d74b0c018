"""From a decorated function and one call's arguments to a FlowMesh operator. Pure: no I/O.

The mapping (documented for users in docs/prefect.md):

- the decorator's ``kind``, ``model`` and keyword params are fixed per task;
- the function's parameters are the operator's inputs: each call's bound arguments (with
  defaults applied) become ``inputs``, by parameter name; every value is a literal, except
  a ``FlowMeshRef`` or a ``BlobInput``, which become ``{blob: digest}``;
- except the parameters named in ``call_params``: those set params per call (on top of
  the fixed ones), and one named ``model`` sets the model;
- for ``kind="python"`` the function is also what runs, on a worker, by its importable
  name and source hash (``python_operator``); its params are its keyword arguments, and
  the fixed ones are left out of the task's signature. For every other kind the body is
  never run: write a docstring or ``...``.

This module must never build an operator that the client SDK would not build itself.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flowmesh_core.client import python_operator
from flowmesh_core.errors import InvalidOperatorError
from flowmesh_core.models import BlobInput, Operator
from flowmesh_core.models.parse import parse_operator
from flowmesh_prefect.results import FlowMeshRef

__all__ = ["PYTHON_KIND", "OperatorSpec", "bind_inputs", "make_spec"]

PYTHON_KIND = "python"
_MODEL = "model"


@dataclass(frozen=True)
class OperatorSpec:
    """What a FlowMesh task fixes at decoration: kind, model, params, dedup (and the function).

    ``call_params`` names the function parameters that are params (or the model), not
    inputs.
    """

    kind: str
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    dedup: bool = True
    function: Callable[..., Any] | None = None  # only for kind="python"
    call_params: frozenset[str] = frozenset()

    def build(self, arguments: Mapping[str, Any]) -> Operator:
        """The operator for one call, ``arguments`` being its bound arguments by name."""
        inputs = {n: _as_input(v) for n, v in arguments.items() if n not in self.call_params}
        per_call = {n: v for n, v in arguments.items() if n in self.call_params}
        if self.function is not None:
            op = python_operator(self.function, inputs, **{**self.params, **per_call})
            return op if self.dedup else op.model_copy(update={"dedup": False})
        model = per_call.pop(_MODEL, self.model)
        document = {
            "kind": self.kind,
            "model": model,
            "params": {**self.params, **per_call},
            "inputs": inputs,
            "dedup": self.dedup,
        }
        return parse_operator(document)


def make_spec(
    fn: Callable[..., Any],
    kind: str,
    model: str | None,
    params: Mapping[str, Any],
    dedup: bool,
    call_params: Collection[str],
) -> tuple[OperatorSpec, inspect.Signature]:
    """The spec for ``fn`` and the signature its task exposes, checked at decoration."""
    if kind == PYTHON_KIND:
        spec = _python_spec(fn, model, params, dedup)
        signature = _exposed_signature(fn, params)
    else:
        spec = OperatorSpec(kind, model, dict(params), dedup)
        signature = _exposed_signature(fn, {})
    unknown = sorted(set(call_params) - set(signature.parameters))
    if unknown:
        raise InvalidOperatorError(
            f"call_params names {', '.join(map(repr, unknown))}, which "
            f"{fn.__qualname__} does not take as a parameter"
        )
    return replace(spec, call_params=frozenset(call_params)), signature


def _as_input(value: Any) -> Any:
    """One argument in the operator's written form: a blob by digest, else a literal."""
    if isinstance(value, FlowMeshRef):
        return value.as_input()
    if isinstance(value, BlobInput):
        return value
    # Explicitly a literal: a dict that happens to look like {blob: ...} stays data.
    return {"value": value}


def _python_spec(
    fn: Callable[..., Any], model: str | None, params: Mapping[str, Any], dedup: bool
) -> OperatorSpec:
    """The spec for ``kind="python"``, checked now rather than at the first run."""
    if model is not None:
        raise InvalidOperatorError("kind='python' runs a function and takes no model")
    try:
        python_operator(fn, {}, **params)
    except InvalidOperatorError as exc:
        raise InvalidOperatorError(f"{exc}{_shadow_hint(fn)}") from exc
    return OperatorSpec(PYTHON_KIND, None, dict(params), dedup, fn)


def _shadow_hint(fn: Callable[..., Any]) -> str:
    """A hint for the one naming error that decorating a definition causes, else ""."""
    module_name, qualname = getattr(fn, "__module__", ""), getattr(fn, "__qualname__", "<")
    module = sys.modules.get(module_name)
    if module is None or module_name == "__main__" or "<" in qualname:
        return ""
    if getattr(module, qualname.split(".")[0], None) is not None:
        return ""
    return (
        ". kind='python' names the function for workers to import, so decorating its "
        "definition would hide it behind the Prefect task: build the task from the plain "
        "function instead, e.g. `add_task = flowmesh_task(kind='python')(ops.add)`"
    )


def _exposed_signature(fn: Callable[..., Any], fixed: Mapping[str, Any]) -> inspect.Signature:
    """The task's signature: ``fn``'s, less the parameters fixed at decoration.

    Each remaining parameter names one input, so ``*args`` (which has no names) is refused.
    """
    signature = inspect.signature(fn)
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise InvalidOperatorError(
                f"{fn.__qualname__} takes *{parameter.name}, but each operator input needs "
                "a name: declare the inputs as named parameters"
            )
    kept = [p for name, p in signature.parameters.items() if name not in fixed]
    return signature.replace(parameters=kept)


def bind_inputs(signature: inspect.Signature, args: Any, kwargs: Any) -> dict[str, Any]:
    """One call's arguments by input name, defaults applied and ``**kwargs`` flattened."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    inputs: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            inputs.update(value)
        else:
            inputs[name] = value
    return inputs
