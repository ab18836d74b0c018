"""``@task.flowmesh``: a TaskFlow function that returns the FlowMesh work to run.

The function runs in the Airflow worker with its (XCom-resolved) arguments and returns an
operator or a workflow (a model or a mapping; a mapping with ``nodes`` is a workflow);
``FlowMeshOperator`` then submits and waits for it exactly as it would for a literal one,
deferring by default, and its XCom reference is the task's return value.

This module only binds the function to the operator; it must never grow behaviour of its
own that the plain operator lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.bases.decorator import (
    DecoratedOperator,
    TaskDecorator,
    determine_kwargs,
    task_decorator_factory,
)
from airflow.sdk.definitions.context import context_merge
from airflow.sdk.exceptions import AirflowException

from flowmesh_airflow.operators import FlowMeshOperator, plain_spec
from flowmesh_core.models import Operator, Workflow

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["flowmesh_task"]


class _FlowMeshDecoratedOperator(DecoratedOperator, FlowMeshOperator):
    """Calls the function, then submits what it returned as ``FlowMeshOperator`` does."""

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *FlowMeshOperator.template_fields,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **FlowMeshOperator.template_fields_renderers,
    }
    custom_operator_name = "@task.flowmesh"
    overwrite_rtif_after_execution = True

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("multiple_outputs", None)  # one reference, never unrolled
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            multiple_outputs=False,
            **kwargs,
        )

    def execute(self, context: Context) -> Any:
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        spec = self.python_callable(*self.op_args, **kwargs)
        if isinstance(spec, Workflow) or (isinstance(spec, Mapping) and "nodes" in spec):
            self.workflow = plain_spec(spec)
        elif isinstance(spec, Operator | Mapping):
            self.operator = plain_spec(spec)
        else:
            raise AirflowException(
                f"{self.task_id}: a @task.flowmesh function returns a FlowMesh operator or "
                f"workflow (a model or a mapping), not {type(spec).__name__}"
            )
        return super().execute(context)


def flowmesh_task(
    python_callable: Callable[..., Any] | None = None, **kwargs: Any
) -> TaskDecorator:
    """``@task.flowmesh(...)``: the function returns FlowMesh work; kwargs go to the operator."""
    return task_decorator_factory(
        python_callable=python_callable,
        decorated_operator_class=_FlowMeshDecoratedOperator,
        **kwargs,
    )
