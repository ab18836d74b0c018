"""``@flowmesh_task``: a Prefect task whose work is one FlowMesh operator.

    @flowmesh_task(kind="embed", model="all-MiniLM-L6-v2", normalize=True)
    def embed(texts: list[str]) -> list[list[float]]:
        '''Sentence embeddings, computed (or found) on FlowMesh.'''

    embed(["a", "b"])                    # in a flow: one task run, one operator
    embed.map([["a"], ["b", "c"]])       # one task run and one operator per element

The decorator's keywords fix the operator's kind, model and params; the function's
parameters are its inputs (see ``_operator`` for the exact mapping); the return value is
the result loaded from FlowMesh's CAS, or a ``FlowMeshRef`` with ``returns="reference"``.
What comes back is a real ``prefect.Task``: ``.submit()``, ``.map()``, ``.with_options()``,
retries, timeouts, tags and concurrency limits all behave as for any other task.

This module must never hold scheduling logic or talk HTTP: it binds arguments, hands the
operator to the client SDK (``_run``) and reports (``_ui``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal, get_args

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import TaskOptions

from flowmesh_core.errors import ConfigError
from flowmesh_prefect._operator import PYTHON_KIND, OperatorSpec, bind_inputs, make_spec
from flowmesh_prefect._run import arun_operator, current_attempt, run_operator
from flowmesh_prefect._ui import areport, report, run_log
from flowmesh_prefect.credentials import (
    CredentialsSource,
    aresolve_credentials,
    resolve_credentials,
)
from flowmesh_prefect.results import aload_value, load_value

__all__ = ["Returns", "flowmesh_task"]

Returns = Literal["value", "reference"]


@dataclass(frozen=True)
class _Binding:
    """Everything one decorated function needs at run time."""

    spec: OperatorSpec
    signature: inspect.Signature
    returns: Returns
    credentials: CredentialsSource
    timeout: float | None
    artifact: bool


def flowmesh_task(
    *,
    kind: str,
    model: str | None = None,
    returns: Returns = "value",
    credentials: CredentialsSource = None,
    timeout: float | None = None,
    dedup: bool = True,
    artifact: bool = True,
    call_params: Collection[str] = (),
    task_options: TaskOptions | None = None,
    **params: Any,
) -> Callable[[Callable[..., Any]], Task[..., Any]]:
    """Make a Prefect task that runs one FlowMesh operator per call.

    ``kind``, ``model`` and ``**params`` fix the operator; each call's arguments are its
    inputs, except those named in ``call_params``: they set params per call (``model``
    sets the model). ``returns`` picks the result (``"value"``) or a ``FlowMeshRef``
    (``"reference"``). ``credentials`` is a ``FlowMeshCredentials`` block, the name of a
    saved one, or None for ``FLOWMESH_SERVER_URL`` / ``FLOWMESH_TOKEN``. ``timeout``
    bounds one attempt's wait in seconds (None: until FlowMesh finishes). ``dedup=False``
    keeps the work private (never shared, never from the cache). ``artifact`` publishes a
    summary artifact per run. ``task_options`` go to ``prefect.task`` as they are
    (retries, tags, task_run_name, timeout_seconds...).

    Raises ConfigError or InvalidOperatorError at decoration for what cannot work; at run
    time OperatorFailedError (FlowMesh's message), OperatorTimeoutError, or the client's
    errors (ServiceUnavailableError names the URL it tried).
    """
    if returns not in get_args(Returns):
        raise ConfigError(f"returns must be 'value' or 'reference', not {returns!r}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")

    def decorate(fn: Callable[..., Any]) -> Task[..., Any]:
        spec, signature = make_spec(fn, kind, model, params, dedup, call_params)
        binding = _Binding(spec, signature, returns, credentials, timeout, artifact)
        use_async = kind != PYTHON_KIND and inspect.iscoroutinefunction(fn)
        runner = _async_runner(binding) if use_async else _sync_runner(binding)
        _present_as(runner, fn, signature)
        return Task(runner, **_options(kind, task_options or {}))

    return decorate


def _options(kind: str, given: TaskOptions) -> TaskOptions:
    """``given`` plus FlowMesh's defaults: tags by kind, and no Prefect-side cache."""
    options: TaskOptions = {**given}
    options["tags"] = {"flowmesh", f"flowmesh:{kind}", *(given.get("tags") or ())}
    if "cache_policy" not in given and "cache_key_fn" not in given:
        # FlowMesh's action cache already answers repeated work, for every tenant; a
        # Prefect cache would only hash (possibly large) inputs and persist results again.
        options["cache_policy"] = NO_CACHE
    return options


def _present_as(runner: Callable[..., Any], fn: Callable[..., Any], sig: inspect.Signature) -> None:
    """Give ``runner`` ``fn``'s name, docs and (reduced) signature, for Prefect and its UI."""
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(runner, attribute, getattr(fn, attribute, None))
    annotations = getattr(fn, "__annotations__", {})
    runner.__annotations__ = {
        name: hint
        for name, hint in annotations.items()
        if name in sig.parameters or name == "return"
    }
    runner.__signature__ = sig  # type: ignore[attr-defined]
    # Prefect keys a task by its function's code object; every runner shares one, so name
    # it after the decorated function (module included) to keep task keys apart.
    runner.__code__ = runner.__code__.replace(
        co_name=fn.__name__, co_qualname=f"{fn.__module__}.{fn.__qualname__}"
    )


def _sync_runner(binding: _Binding) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        op = binding.spec.build(bind_inputs(binding.signature, args, kwargs))
        credentials = resolve_credentials(binding.credentials)
        with credentials.get_client() as client:
            ref = run_operator(client, op, current_attempt(), binding.timeout, run_log())
            report(binding.spec.kind, ref, binding.artifact)
            return ref if binding.returns == "reference" else load_value(client, ref.digest)

    return run


def _async_runner(binding: _Binding) -> Callable[..., Any]:
    async def run(*args: Any, **kwargs: Any) -> Any:
        op = binding.spec.build(bind_inputs(binding.signature, args, kwargs))
        credentials = await aresolve_credentials(binding.credentials)
        async with credentials.get_async_client() as client:
            ref = await arun_operator(client, op, current_attempt(), binding.timeout, run_log())
            await areport(binding.spec.kind, ref, binding.artifact)
            if binding.returns == "reference":
                return ref
            return await aload_value(client, ref.digest)

    return run
