"""Reading operators and workflows from what users write (YAML or JSON), with clear errors.

Pydantic's errors are turned into one FlowMesh error whose message lists each field to fix
by its path (``nodes.embed.inputs.texts: ...``). A malformed digest anywhere surfaces as
InvalidDigestError, so callers can tell it apart from other bad input.
"""

from __future__ import annotations

from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from flowmesh_core.errors import InvalidDigestError, InvalidInputError, InvalidOperatorError
from flowmesh_core.models.api import BlobGrantRequest, ResultsRequest
from flowmesh_core.models.operator import Operator
from flowmesh_core.models.workflow import Workflow

__all__ = [
    "parse_document",
    "parse_grant_request",
    "parse_operator",
    "parse_results_request",
    "parse_workflow",
]

_M = TypeVar("_M", bound=BaseModel)


def parse_document(text: str | bytes, source: str = "input") -> Any:
    """Parse YAML (JSON is YAML too); InvalidInputError names the line that is wrong."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInputError(f"{source}: not valid YAML or JSON{where}: {problem}") from exc


def _validate(model: type[_M], data: Any, what: str, fields: str = "'kind:' or 'nodes:'") -> _M:
    if not isinstance(data, dict):
        raise InvalidOperatorError(
            f"{what} must be a mapping (fields like {fields}), got {type(data).__name__}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _convert(exc, what) from exc


def _convert(exc: ValidationError, what: str) -> InvalidInputError:
    problems = []
    digest_problem = False
    for err in exc.errors():
        path = ".".join(str(part) for part in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"{path}: {msg}" if path else msg)
        digest_problem = digest_problem or err["type"] == "invalid_digest"
    message = f"invalid {what}: " + "; ".join(problems)
    if digest_problem:
        return InvalidDigestError(message)
    return InvalidOperatorError(message)


def parse_operator(data: Any) -> Operator:
    """An Operator from parsed data; InvalidOperatorError lists every field to fix."""
    return _validate(Operator, data, "operator")


def parse_workflow(data: Any) -> Workflow:
    """A Workflow from parsed data: references resolved and the graph checked for cycles."""
    return _validate(Workflow, data, "workflow")


def parse_results_request(data: Any) -> ResultsRequest:
    """A ResultsRequest (``{digests: [...]}``); a malformed digest is InvalidDigestError."""
    return _validate(ResultsRequest, data, "results request", "'digests:'")


def parse_grant_request(data: Any) -> BlobGrantRequest:
    """A BlobGrantRequest (``{tenant: NAME}``); InvalidInputError names what to fix."""
    return _validate(BlobGrantRequest, data, "grant request", "'tenant:'")
