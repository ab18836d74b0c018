"""The base every FlowMesh value model shares: frozen, strict about unknown fields."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from flowmesh_core.errors import InvalidDigestError
from flowmesh_core.hashing import validate_digest

__all__ = ["NAME_PATTERN", "Digest", "FrozenModel", "Name", "ReplyModel"]

#: What a name (tenant, workflow node, ...) may be; the API's path parameters reuse it.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
_NAME_RE = re.compile(NAME_PATTERN)


class FrozenModel(BaseModel):
    """Immutable, rejects unknown fields: a typo in a workflow file is an error, not a no-op."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ReplyModel(BaseModel):
    """Immutable, ignores unknown fields: what the server answers. A newer server may add a
    field to an answer; an older client reading it must not break (forward compatibility)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return value


def _check_digest(value: str) -> str:
    # Raised as a pydantic error so the location (which field) is kept; the converter in
    # models/parse.py turns it back into InvalidDigestError.
    try:
        return validate_digest(value)
    except InvalidDigestError as exc:
        raise PydanticCustomError("invalid_digest", "{msg}", {"msg": str(exc)}) from exc


Digest = Annotated[str, AfterValidator(_check_digest)]
"""A validated ``sha256:<hex>`` digest."""

Name = Annotated[str, AfterValidator(_check_name)]
"""A tenant, node or worker name: safe inside a Redis key and a file name."""
