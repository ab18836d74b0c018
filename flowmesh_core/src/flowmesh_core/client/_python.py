"""Building ``python`` operators from a function, so nobody computes its version by hand.

The operator names the function as ``module:qualname``, which workers import, and carries
its source hash as its version (``flowmesh_core.hashing.function_version``), which workers
check against their own copy.

This module must never import, pickle or call the function's module on anyone's behalf:
it only reads what the caller already has, and refuses functions a worker could not
import by name (lambdas, nested functions, functions of a script run as ``__main__``).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any

from flowmesh_core.errors import InvalidOperatorError
from flowmesh_core.hashing import canonical_json, function_version
from flowmesh_core.models import Operator
from flowmesh_core.models.parse import parse_operator

__all__ = ["python_operator"]


def python_operator(
    fn: Callable[..., Any], inputs: Mapping[str, Any], /, **kwargs: Any
) -> Operator:
    """A ``python`` operator that calls ``fn(**inputs, **kwargs)`` on a worker.

    ``inputs`` are written as an operator's inputs are (a plain value, or
    ``{"blob": digest}``); ``kwargs`` must be plain JSON and go into the op key. The
    worker must allow ``fn``'s module (``FLOWMESH_WORKER_PYTHON_MODULES``) and have the
    same source of ``fn``. For a private, never-shared run, use
    ``op.model_copy(update={"dedup": False})``.

    Raises InvalidOperatorError when ``fn`` cannot be named for a worker to import, or
    when inputs and kwargs name the same argument; InvalidInputError for non-JSON kwargs.
    """
    target = _importable_name(fn)
    clash = sorted(set(inputs) & set(kwargs))
    if clash:
        raise InvalidOperatorError(
            f"{', '.join(map(repr, clash))} is given both as an input and as a kwarg of "
            f"{target}; name each argument once"
        )
    canonical_json(kwargs)
    return parse_operator(
        {
            "kind": "python",
            "version": function_version(fn),
            "params": {"function": target, "kwargs": dict(kwargs)},
            "inputs": dict(inputs),
        }
    )


def _importable_name(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of ``fn``, checked to lead back to ``fn`` itself."""
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        raise InvalidOperatorError(
            f"a python operator calls a function defined with def, not {type(fn).__name__}"
        )
    if inspect.ismethod(fn) and not inspect.isclass(fn.__self__):
        raise InvalidOperatorError(
            f"{fn.__qualname__} is bound to an instance, which a worker does not have: "
            "pass a plain function, a staticmethod or a classmethod"
        )
    module, qualname = fn.__module__, fn.__qualname__
    if module == "__main__":
        raise InvalidOperatorError(
            f"{qualname} is defined in __main__ (a script run directly), which workers "
            "cannot import: move it into a module that both sides can import"
        )
    if "<" in qualname:
        raise InvalidOperatorError(
            f"{module}:{qualname} is a lambda or a nested function, which workers cannot "
            "import by name: define it at the top level of its module (or on a class)"
        )
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    # Bound methods are made afresh on each access, so compare what they wrap.
    if getattr(found, "__func__", found) is not getattr(fn, "__func__", fn):
        raise InvalidOperatorError(
            f"{module}:{qualname} does not name this function (it was replaced or "
            "shadowed in its module), so a worker would import something else"
        )
    return f"{module}:{qualname}"
