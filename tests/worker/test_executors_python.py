"""The ``python`` kind: the allow-list, the version check, calls, results, and the client's
``python_operator``.

Functions come from ``tests.worker.ops`` (and a few from this module, which is under the
same allowed package ``tests.worker``). Batches are built the way the control plane builds
them, from ``python_operator`` through ``flowmesh_core.keys.expand``.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flowmesh_core.client import python_operator
from flowmesh_core.errors import InvalidInputError, InvalidOperatorError
from flowmesh_core.hashing import function_version
from flowmesh_core.keys import expand
from flowmesh_core.models import BlobInput, Item, ItemLiteral, LiteralInput, Operator
from flowmesh_core.registry import Registry
from flowmesh_worker.executors import Batch, ItemError, WorkItem, create_executor
from flowmesh_worker.executors import python as python_executor
from flowmesh_worker.executors.python import PythonExecutor, module_allowed
from tests.worker import ops

REGISTRY = Registry.default()
ROOT = Path(__file__).resolve().parents[2]
ALLOWED = ("tests.worker",)


def literals(item: Item) -> dict[str, Any]:
    """What the worker hands an executor for an item whose inputs are all literals."""
    assert all(isinstance(inp, ItemLiteral) for inp in item.inputs.values()), item.inputs
    return {name: inp.value for name, inp in item.inputs.items()}  # type: ignore[union-attr]


def returns_set(x: Any) -> Any:
    return {x}


def returns_nan(x: Any) -> Any:
    return math.nan


class Tools:
    @staticmethod
    def double(x: int) -> int:
        return 2 * x

    @classmethod
    def triple(cls, x: int) -> int:
        return 3 * x

    def method(self, x: int) -> int:
        return x


def batch_of(*operators: Operator) -> Batch:
    """One batch holding the items of ``operators`` (all of one function and version)."""
    items = []
    for op in operators:
        [item] = expand(op, REGISTRY, max_inline_bytes=1 << 20).items
        items.append(WorkItem(item.op_key, literals(item), item.params))
    return Batch("python", str(operators[0].version), None, items)


def raw_batch(function: str, version: str = "src-0000000000000000", **inputs: Any) -> Batch:
    """A batch for a function the client SDK would not name (to test the worker's checks)."""
    params = {"function": function, "kwargs": {}}
    return Batch("python", version, None, [WorkItem("k" * 64, inputs, params)])


def run(batch: Batch, allowed: tuple[str, ...] = ALLOWED) -> list[Any]:
    return PythonExecutor(allowed_modules=allowed).run(batch, None)


def error_of(outcome: Any) -> str:
    assert isinstance(outcome, ItemError), f"expected an ItemError, got {outcome!r}"
    return outcome.message


# ---------------------------------------------------------------------- function_version


def test_function_version_is_the_hash_of_the_dedented_source() -> None:
    # The definition, pinned: the function's own text, exactly as written in its file.
    source = 'def echo(x: Any) -> Any:\n    """``x``, unchanged."""\n    return x\n'
    expected = "src-" + hashlib.sha256(source.encode()).hexdigest()[:16]
    assert function_version(ops.echo) == expected


def test_function_version_includes_decorators_and_drops_indentation() -> None:
    source = "@staticmethod\ndef double(x: int) -> int:\n    return 2 * x\n"
    expected = "src-" + hashlib.sha256(source.encode()).hexdigest()[:16]
    assert function_version(Tools.double) == expected
    assert textwrap.dedent(inspect.getsource(Tools.double)) == source


def test_function_version_is_stable_and_distinguishes_functions() -> None:
    versions = {function_version(f) for f in (ops.echo, ops.add, ops.slow_echo, ops.fail_on)}
    assert len(versions) == 4
    assert function_version(ops.echo) == function_version(ops.echo)
    assert all(v.startswith("src-") and len(v) == 20 for v in versions)


def test_function_version_is_the_same_in_another_process() -> None:
    code = (
        "from flowmesh_core.hashing import function_version; from tests.worker import ops; "
        "print(function_version(ops.fail_on))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == function_version(ops.fail_on)


def test_function_version_needs_source() -> None:
    with pytest.raises(InvalidOperatorError, match="cannot read the source of len"):
        function_version(len)


# ----------------------------------------------------------------------- python_operator


def test_python_operator_names_the_function_and_its_version() -> None:
    op = python_operator(ops.add, {"a": 1}, b=2)
    assert op.kind == "python"
    assert op.version == function_version(ops.add)
    assert op.params == {"function": "tests.worker.ops:add", "kwargs": {"b": 2}}
    assert op.inputs == {"a": LiteralInput(value=1)}


def test_python_operator_takes_inputs_in_the_operator_forms() -> None:
    digest = "sha256:" + "a" * 64
    op = python_operator(ops.echo, {"x": {"blob": digest}})
    assert op.inputs == {"x": BlobInput(blob=digest)}


def test_python_operator_names_methods_by_their_class() -> None:
    here = "tests.worker.test_executors_python"
    assert python_operator(Tools.double, {"x": 1}).params["function"] == f"{here}:Tools.double"
    assert python_operator(Tools.triple, {"x": 1}).params["function"] == f"{here}:Tools.triple"


def test_python_operator_refuses_what_a_worker_cannot_import() -> None:
    def nested(x: Any) -> Any:
        return x

    with pytest.raises(InvalidOperatorError, match="lambda or a nested function"):
        python_operator(lambda x: x, {"x": 1})
    with pytest.raises(InvalidOperatorError, match="lambda or a nested function"):
        python_operator(nested, {"x": 1})
    with pytest.raises(InvalidOperatorError, match="not builtin_function_or_method"):
        python_operator(len, {"obj": [1]})
    with pytest.raises(InvalidOperatorError, match="bound to an instance"):
        python_operator(Tools().method, {"x": 1})


def test_python_operator_refuses_functions_of_main() -> None:
    def script_function(x: Any) -> Any:
        return x

    script_function.__module__ = "__main__"
    script_function.__qualname__ = "script_function"
    with pytest.raises(InvalidOperatorError, match="defined in __main__"):
        python_operator(script_function, {"x": 1})


def test_python_operator_refuses_a_name_that_leads_elsewhere() -> None:
    def echo(x: Any) -> Any:
        return [x]

    echo.__module__ = "tests.worker.ops"
    echo.__qualname__ = "echo"
    with pytest.raises(InvalidOperatorError, match="does not name this function"):
        python_operator(echo, {"x": 1})


def test_python_operator_refuses_an_argument_given_twice() -> None:
    with pytest.raises(InvalidOperatorError, match="'b' is given both as an input and as a kwarg"):
        python_operator(ops.add, {"a": 1, "b": 2}, b=3)


def test_python_operator_needs_json_kwargs() -> None:
    with pytest.raises(InvalidInputError, match="not plain JSON"):
        python_operator(ops.slow_echo, {"x": 1}, delay={0.5})


# ------------------------------------------------------------------------- the executor


def test_the_registry_builds_the_executor_with_its_allow_list() -> None:
    executor = create_executor("python", python_modules=ALLOWED)
    assert isinstance(executor, PythonExecutor)
    assert executor.allowed_modules == ALLOWED


def test_items_call_the_function_with_inputs_and_kwargs() -> None:
    assert run(batch_of(python_operator(ops.echo, {"x": {"deep": [1, None]}}))) == [
        {"deep": [1, None]}
    ]
    assert run(batch_of(python_operator(ops.add, {"a": 1}, b=2.5))) == [3.5]
    assert run(batch_of(python_operator(ops.slow_echo, {"x": "z"}, delay=0))) == ["z"]
    assert run(batch_of(python_operator(Tools.triple, {"x": 2}))) == [6]


def test_an_exception_fails_only_its_item() -> None:
    batch = batch_of(*(python_operator(ops.fail_on, {"x": x}, bad=2) for x in (1, 2, 3)))
    first, failed, third = run(batch)
    assert (first, third) == (1, 3)
    assert error_of(failed) == "tests.worker.ops:fail_on raised ValueError: refusing 2"


def test_a_worker_with_other_source_refuses_the_item() -> None:
    op = python_operator(ops.echo, {"x": 1})
    stale = op.model_copy(update={"version": "src-0123456789abcdef"})
    message = error_of(run(batch_of(stale))[0])
    assert "different version of tests.worker.ops:echo" in message
    assert function_version(ops.echo) in message
    assert "src-0123456789abcdef" in message


@pytest.mark.parametrize(
    ("module", "allowed", "expected"),
    [
        ("tests.worker", ("tests.worker",), True),
        ("tests.worker.ops", ("tests.worker",), True),
        ("tests.worker.ops", ("tests.worker.ops",), True),
        ("tests.worker.ops", ("json", "tests"), True),
        ("tests.workerx", ("tests.worker",), False),
        ("tests.worker.ops", ("tests.work",), False),
        ("tests", ("tests.worker",), False),
        ("tests.worker.ops", (), False),
    ],
)
def test_module_allowed(module: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert module_allowed(module, allowed) is expected


def test_a_module_outside_the_allow_list_is_refused_with_the_setting_to_change() -> None:
    message = error_of(run(batch_of(python_operator(ops.echo, {"x": 1})), ("tests.work",))[0])
    assert "may not call tests.worker.ops:echo" in message
    assert "module 'tests.worker.ops' is not in its allow-list (allowed: tests.work)" in message
    assert "FLOWMESH_WORKER_PYTHON_MODULES (a JSON list" in message


def test_an_empty_allow_list_refuses_everything() -> None:
    message = error_of(run(batch_of(python_operator(ops.echo, {"x": 1})), ())[0])
    assert "(allowed: none)" in message


def test_a_refused_module_is_never_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    message = error_of(run(raw_batch("colorsys:rgb_to_hsv", r=0, g=0, b=0))[0])
    assert "module 'colorsys' is not in its allow-list" in message
    assert "colorsys" not in sys.modules


def test_a_prefix_lookalike_module_is_refused() -> None:
    message = error_of(run(raw_batch("tests.workerx:echo", x=1))[0])
    assert "module 'tests.workerx' is not in its allow-list" in message


def test_a_function_imported_from_elsewhere_is_refused() -> None:
    # This module imports function_version from flowmesh_core.hashing, which is not allowed.
    target = f"{__name__}:function_version"
    message = error_of(run(raw_batch(target, fn=None))[0])
    assert "defined in module 'flowmesh_core.hashing', outside the allow-list" in message


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("tests.worker.ops:time.sleep", "is builtin_function_or_method, not a function"),
        ("tests.worker.ops:time", "is module, not a function"),
        ("tests.worker.ops:echo.__globals__", "may not contain dunder attributes"),
        ("tests.worker.ops:nope", "module 'tests.worker.ops' has no 'nope'"),
        ("tests.worker.no_such_module:f", "cannot import module 'tests.worker.no_such_module'"),
    ],
)
def test_names_that_do_not_lead_to_an_allowed_function_are_refused(
    function: str, expected: str
) -> None:
    assert expected in error_of(run(raw_batch(function, secs=0))[0])


@pytest.mark.parametrize("fn", [returns_set, returns_nan])
def test_a_result_that_is_not_json_fails_the_item(fn: Any) -> None:
    message = error_of(run(batch_of(python_operator(fn, {"x": 1})))[0])
    assert f"{fn.__name__} returned" in message
    assert "not plain JSON" in message


def test_an_argument_given_twice_fails_the_item() -> None:
    version = function_version(ops.echo)
    params = {"function": "tests.worker.ops:echo", "kwargs": {"x": 1}}
    batch = Batch("python", version, None, [WorkItem("k" * 64, {"x": 2}, params)])
    assert "'x' is given both as an input and as a kwarg" in error_of(run(batch)[0])


def test_functions_are_imported_and_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def counting(fn: Any) -> str:
        calls.append(fn)
        return function_version(fn)

    monkeypatch.setattr(python_executor, "function_version", counting)
    executor = PythonExecutor(allowed_modules=ALLOWED)
    for x in (1, 2):
        assert executor.run(batch_of(python_operator(ops.echo, {"x": x})), None) == [x]
    assert calls == [ops.echo]
