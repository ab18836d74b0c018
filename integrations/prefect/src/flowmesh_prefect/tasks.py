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
import re
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Never, ParamSpec, TypeVar, get_args

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import TaskOptions
from prefect.utilities.annotations import NotSet

from flowmesh_core.errors import AuthenticationError, ConfigError, ServiceUnavailableError
from flowmesh_prefect._cache import with_tenant
from flowmesh_prefect._operator import PYTHON_KIND, OperatorSpec, bind_inputs, make_spec
from flowmesh_prefect._run import arun_operator, current_attempt, run_operator
from flowmesh_prefect._ui import announcer, areport, artifact_key, emit_failed, report, run_log
from flowmesh_prefect.credentials import (
    CredentialsSource,
    aresolve_credentials,
    resolve_credentials,
    source_name,
)
from flowmesh_prefect.errors import OperatorFailedError
from flowmesh_prefect.results import aload_value, load_value

__all__ = ["FlowMeshTask", "Returns", "computed_on_flowmesh", "flowmesh_task"]

Returns = Literal["value", "reference"]
P = ParamSpec("P")
R = TypeVar("R")


def computed_on_flowmesh() -> Never:
    """What a decorated function's body returns: ``return computed_on_flowmesh()``.

    The decorator replaces the body (for every kind but ``python``): the task returns
    what FlowMesh computed. Writing the body this way says so to a reader, and to a type
    checker, for which a body of only a docstring is a missing return (it returns
    ``Never``, which fits any annotation). Never called by the task; calling it outside
    one is a mistake, and raises.
    """
    raise RuntimeError(
        "computed_on_flowmesh() stands for the result FlowMesh computes: call the "
        "decorated task (in a Prefect flow, or directly), not the function it wraps"
    )


@dataclass(frozen=True)
class _Binding:
    """Everything one decorated function needs at run time."""

    spec: OperatorSpec
    signature: inspect.Signature
    returns: Returns
    credentials: CredentialsSource
    timeout: float | None
    artifact: str | None


class FlowMeshTask(Task[P, R]):
    """A ``prefect.Task`` whose ``with_options`` keeps the tenant in any cache key.

    Prefect's own ``with_options`` builds a plain ``Task`` from the options it is given,
    so ``.with_options(cache_policy=INPUTS)`` would key the cache by the inputs alone and
    hand tenant B's cached value to tenant D. Here a cache policy or ``cache_key_fn``
    given later is combined with ``TenantCachePolicy`` exactly as one given to the
    decorator is (``_options``), new ``tags`` keep the ``flowmesh`` and
    ``flowmesh:<kind>`` tags, and the copy is a ``FlowMeshTask`` again.
    """

    flowmesh_credentials: CredentialsSource = None

    def with_options(self, **options: Any) -> FlowMeshTask[P, R]:
        if options.get("tags") is not None:  # Prefect replaces the tags: keep FlowMesh's
            ours = {t for t in self.tags if t == "flowmesh" or t.startswith("flowmesh:")}
            options["tags"] = {*ours, *options["tags"]}
        policy = options.pop("cache_policy", NotSet)
        key_fn = options.pop("cache_key_fn", None)
        if policy is not NotSet or key_fn is not None:
            cache: TaskOptions = {"cache_policy": policy if policy is not NotSet else None}
            if key_fn is not None:
                cache["cache_key_fn"] = key_fn
            options["cache_policy"] = _cache_options(cache, self.flowmesh_credentials)
        return _as_flowmesh_task(super().with_options(**options), self.flowmesh_credentials)


def _as_flowmesh_task(task: Task[P, R], credentials: CredentialsSource) -> FlowMeshTask[P, R]:
    # Task.with_options constructs ``Task`` by name, not ``type(self)``; the copy has all
    # of Task's state, so giving it back its class keeps ``with_options`` guarded.
    task.__class__ = FlowMeshTask
    flowmesh: FlowMeshTask[P, R] = task  # type: ignore[assignment]
    flowmesh.flowmesh_credentials = credentials
    return flowmesh


def flowmesh_task(
    *,
    kind: str,
    model: str | None = None,
    returns: Returns = "value",
    credentials: CredentialsSource = None,
    timeout: float | None = None,
    dedup: bool = True,
    artifact: bool | str = True,
    call_params: Collection[str] = (),
    task_options: TaskOptions | None = None,
    **params: Any,
) -> Callable[[Callable[P, R]], FlowMeshTask[P, R]]:
    """Make a Prefect task that runs one FlowMesh operator per call.

    The task is typed as the function is: its parameters, and its return annotation as
    what a call returns (annotate ``FlowMeshRef`` with ``returns="reference"``; an
    ``async def`` gives a task to await). Write the body as ``return
    computed_on_flowmesh()`` (or a docstring alone, if no type checker reads it).

    ``kind``, ``model`` and ``**params`` fix the operator; each call's arguments are its
    inputs, except those named in ``call_params``: they set params per call (``model``
    sets the model). ``returns`` picks the result (``"value"``) or a ``FlowMeshRef``
    (``"reference"``). ``credentials`` is a ``FlowMeshCredentials`` block, the name of a
    saved one, or None for ``FLOWMESH_SERVER_URL`` / ``FLOWMESH_TOKEN``. ``timeout``
    bounds one attempt's wait in seconds (None: until FlowMesh finishes). ``dedup=False``
    keeps the work private (never shared, never from the cache). ``artifact`` publishes a
    summary artifact per run, under the key ``flowmesh-<function name>`` (or the key given
    as a string; False: none). ``task_options`` go to ``prefect.task`` as they are
    (retries, tags, task_run_name, timeout_seconds...).

    Raises ConfigError or InvalidOperatorError at decoration for what cannot work; at run
    time OperatorFailedError (FlowMesh's message), OperatorTimeoutError, or the client's
    errors (ServiceUnavailableError names the URL it tried).
    """
    if returns not in get_args(Returns):
        raise ConfigError(f"returns must be 'value' or 'reference', not {returns!r}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(artifact, str) and not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", artifact):
        raise ConfigError(
            f"artifact key {artifact!r}: Prefect keys are lowercase letters, digits and dashes"
        )

    def decorate(fn: Callable[P, R]) -> FlowMeshTask[P, R]:
        spec, signature = make_spec(fn, kind, model, params, dedup, call_params)
        key = (
            None
            if artifact is False
            else (artifact_key(fn.__name__) if artifact is True else artifact)
        )
        binding = _Binding(spec, signature, returns, credentials, timeout, key)
        use_async = kind != PYTHON_KIND and inspect.iscoroutinefunction(fn)
        runner = _async_runner(binding) if use_async else _sync_runner(binding)
        _present_as(runner, fn, signature)
        task: Task[P, R] = Task(runner, **_options(kind, task_options or {}, credentials))
        return _as_flowmesh_task(task, credentials)

    return decorate


def _options(kind: str, given: TaskOptions, credentials: CredentialsSource) -> TaskOptions:
    """``given`` plus FlowMesh's defaults: tags by kind, and no Prefect-side cache; a cache
    the caller opts into is keyed by the tenant too (see ``_cache``)."""
    options: TaskOptions = {**given}
    options["tags"] = {"flowmesh", f"flowmesh:{kind}", *(given.get("tags") or ())}
    options.pop("cache_key_fn", None)
    options["cache_policy"] = _cache_options(given, credentials)
    return options


def _cache_options(given: TaskOptions, credentials: CredentialsSource) -> Any:
    """The cache policy for ``given``'s ``cache_policy`` / ``cache_key_fn``: none unless
    one is asked for, and then keyed by the tenant too."""
    policy, key_fn = given.get("cache_policy"), given.get("cache_key_fn")
    if (policy is None or policy is NO_CACHE) and key_fn is None:
        # FlowMesh's action cache already answers repeated work, for every tenant; a
        # Prefect cache would only hash (possibly large) inputs and persist results again.
        return NO_CACHE
    return with_tenant(policy, key_fn, credentials)


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


_CLIENT_HINT = "Check FLOWMESH_SERVER_URL (or --server-url / url=)"


@contextmanager
def _failures(kind: str, source: CredentialsSource) -> Iterator[None]:
    """Send the failed event of a workflow that FlowMesh failed; say where a server or
    token setting came from (a block, not FLOWMESH_SERVER_URL) in the client's errors."""
    try:
        yield
    except OperatorFailedError as exc:
        emit_failed(kind, exc.workflow_id, exc.op_key, str(exc))
        raise
    except (AuthenticationError, ServiceUnavailableError) as exc:
        where = source_name(source)
        if where is None:
            raise
        message = str(exc).replace(_CLIENT_HINT, f"Check the server_url of {where}")
        if where not in message:
            message = f"{message} (server_url and token from {where})"
        raise type(exc)(message) from exc


def _sync_runner(binding: _Binding) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        op = binding.spec.build(bind_inputs(binding.signature, args, kwargs))
        credentials = resolve_credentials(binding.credentials)
        kind = binding.spec.kind
        with _failures(kind, binding.credentials), credentials.get_client() as client:
            ref = run_operator(
                client, op, current_attempt(), binding.timeout, run_log(), announcer(kind)
            )
            report(kind, ref, binding.artifact)
            return ref if binding.returns == "reference" else load_value(client, ref.digest)

    return run


def _async_runner(binding: _Binding) -> Callable[..., Any]:
    async def run(*args: Any, **kwargs: Any) -> Any:
        op = binding.spec.build(bind_inputs(binding.signature, args, kwargs))
        credentials = await aresolve_credentials(binding.credentials)
        kind = binding.spec.kind
        async with credentials.get_async_client() as client:
            with _failures(kind, binding.credentials):
                ref = await arun_operator(
                    client, op, current_attempt(), binding.timeout, run_log(), announcer(kind)
                )
            await areport(kind, ref, binding.artifact)
            if binding.returns == "reference":
                return ref
            return await aload_value(client, ref.digest)

    return run
