"""The ``python`` executor: call an allow-listed, importable function once per item.

``params.function`` is ``"module:qualname"``, ``params.kwargs`` a JSON object; the item's
inputs and the kwargs become the call's keyword arguments, and its return value (which
must be plain JSON) is the result. The operator's version is the function's source hash
(``flowmesh_core.hashing.function_version``): a worker whose copy of the function hashes
differently refuses the item, so a stale worker never files a result under a key that
names other code.

This executor must never import a module outside the worker's allow-list
(``FLOWMESH_WORKER_PYTHON_MODULES``), reach a function through a name that leaves the
allowed modules (``allowed:os.system``, ``allowed:f.__globals__``), or unpickle anything:
inputs and results are JSON.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from flowmesh_core.errors import FlowMeshError
from flowmesh_core.hashing import canonical_json, function_version
from flowmesh_worker.executors.base import Batch, Executor, ItemError, Loaded, WorkItem

__all__ = ["MODULES_SETTING", "PythonExecutor", "module_allowed"]

MODULES_SETTING = "FLOWMESH_WORKER_PYTHON_MODULES"
"""The setting that holds the allow-list: a JSON list of module names."""


_MISSING = object()


class _Refused(Exception):
    """A function this worker will not (or cannot) call; becomes an ItemError."""


def module_allowed(module: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``module`` is an allowed entry or a submodule of one (``entry.``-prefixed)."""
    return any(module == entry or module.startswith(entry + ".") for entry in allowed)


class PythonExecutor(Executor):
    """Runs ``python`` items: import, check the version, call, check the result is JSON.

    A function is imported and hashed on first use, and both are kept for the life of
    the process: a file edited on disk afterwards changes neither the code this worker
    runs nor the version it claims (the next worker process picks up both).
    """

    kind: ClassVar[str] = "python"

    def __init__(self, device: str = "cpu", allowed_modules: tuple[str, ...] = ()) -> None:
        super().__init__(device)
        self.allowed_modules = tuple(allowed_modules)
        self._functions: dict[str, tuple[Callable[..., Any], str]] = {}

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        outcomes: list[Any] = []
        for item in batch.items:
            try:
                outcomes.append(self._run_item(batch.version, item))
            except _Refused as exc:
                outcomes.append(ItemError(str(exc)))
        return outcomes

    def _run_item(self, version: str, item: WorkItem) -> Any:
        target = str(item.params["function"])
        fn, worker_version = self._resolve(target)
        if worker_version != version:
            raise _Refused(
                f"this worker has a different version of {target} ({worker_version}) than "
                f"the client that submitted it ({version}): deploy the same code to both, "
                "then resubmit"
            )
        kwargs: Mapping[str, Any] = item.params.get("kwargs") or {}
        clash = sorted(set(kwargs) & set(item.inputs))
        if clash:
            raise _Refused(
                f"{target}: {', '.join(map(repr, clash))} is given both as an input and as a "
                "kwarg; name each argument once"
            )
        try:
            result = fn(**item.inputs, **kwargs)
        except Exception as exc:
            raise _Refused(f"{target} raised {type(exc).__name__}: {exc}") from exc
        try:
            canonical_json(result)
        except FlowMeshError as exc:
            raise _Refused(
                f"{target} returned {type(result).__name__}, which is not plain JSON ({exc}); "
                "return dicts, lists, strings, numbers, booleans or None"
            ) from exc
        return result

    def _resolve(self, target: str) -> tuple[Callable[..., Any], str]:
        """The function named ``module:qualname`` and its version, imported once."""
        if target not in self._functions:
            fn = self._import(target)
            try:
                self._functions[target] = (fn, function_version(fn))
            except FlowMeshError as exc:
                raise _Refused(str(exc)) from exc
        return self._functions[target]

    def _import(self, target: str) -> Callable[..., Any]:
        module_name, _, qualname = target.partition(":")
        if not module_allowed(module_name, self.allowed_modules):
            raise _Refused(self._not_allowed(target, module_name))
        if any(part.startswith("__") for part in qualname.split(".")):
            raise _Refused(f"{target}: a function name may not contain dunder attributes")
        try:
            obj: Any = importlib.import_module(module_name)
        except Exception as exc:
            raise _Refused(
                f"cannot import module {module_name!r} on this worker: {type(exc).__name__}: {exc}"
            ) from exc
        for part in qualname.split("."):
            obj = getattr(obj, part, _MISSING)
            if obj is _MISSING:
                raise _Refused(f"module {module_name!r} has no {qualname!r}")
        if not (inspect.isfunction(obj) or inspect.ismethod(obj)):
            raise _Refused(f"{target} is {type(obj).__name__}, not a function")
        # A name inside an allowed module can still point elsewhere (``import os`` there
        # makes ``allowed:os.system`` resolve): the function itself must be allowed.
        home = str(getattr(obj, "__module__", ""))
        if not module_allowed(home, self.allowed_modules):
            raise _Refused(
                f"this worker may not call {target}: it is defined in module {home!r}, "
                "outside the allow-list; name a function by the module that defines it"
            )
        fn: Callable[..., Any] = obj
        return fn

    def _not_allowed(self, target: str, module_name: str) -> str:
        allowed = ", ".join(self.allowed_modules) or "none"
        return (
            f"this worker may not call {target}: module {module_name!r} is not in its "
            f"allow-list (allowed: {allowed}); list it, or a parent package, in "
            f"{MODULES_SETTING} (a JSON list, e.g. '[\"{module_name}\"]')"
        )
