"""Every error FlowMesh raises on purpose, under one root.

Errors from redis, botocore and httpx are converted at the boundary where they happen
into the most specific class below (``raise ... from exc``), so callers catch FlowMesh
errors only. Each class carries the HTTP status the control plane answers with, so the
API layer never decides status codes on its own.

    FlowMeshError
    ├── ConfigError ............................ settings or URLs that cannot work (500)
    │   ├── UnknownSettingError ................ a key the settings object does not know
    │   └── UnsupportedSchemeError ............. a store URL whose scheme has no backend
    ├── InvalidInputError ...................... the caller sent something to fix (400)
    │   ├── InvalidDigestError ................. not ``sha256:<64 lowercase hex>``
    │   ├── InputTooLargeError ................. an inline value over the limit (413)
    │   ├── DigestMismatchError ................ uploaded bytes that hash to another digest
    │   ├── UnknownKindError ................... no operator kind by that name
    │   ├── InvalidParamsError ................. params that the kind rejects
    │   ├── InvalidOperatorError ............... an operator or workflow that cannot run
    │   ├── UnknownModelError .................. a model no worker may serve
    │   └── ItemRejectedError .................. an item its executor cannot use: not retried
    ├── AuthenticationError .................... no token, or one no tenant holds (401)
    ├── PermissionDeniedError .................. the tenant may not do this (403)
    ├── NotFoundError .......................... the thing named does not exist (404)
    │   └── BlobNotFoundError
    ├── ConflictError .......................... contradicts what is already recorded (409)
    ├── QuotaExceededError ..................... a tenant's quota refused it for now (429)
    ├── IntegrityError ......................... stored bytes do not match their address (500)
    │   └── CorruptBlobError
    └── ServiceUnavailableError ................ a backing service does not answer (503)
        ├── StoreUnavailableError .............. Redis (or the embedded store)
        │   └── StreamGroupMissingError ........ a stream's consumer group is gone (NOGROUP)
        └── BlobStoreUnavailableError .......... the blob backend (disk or S3)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AuthenticationError",
    "BlobNotFoundError",
    "BlobStoreUnavailableError",
    "ConfigError",
    "ConflictError",
    "CorruptBlobError",
    "DigestMismatchError",
    "FlowMeshError",
    "InputTooLargeError",
    "IntegrityError",
    "InvalidDigestError",
    "InvalidInputError",
    "InvalidOperatorError",
    "InvalidParamsError",
    "ItemRejectedError",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "ServiceUnavailableError",
    "StoreUnavailableError",
    "StreamGroupMissingError",
    "UnknownKindError",
    "UnknownModelError",
    "UnknownSettingError",
    "UnsupportedSchemeError",
]


class FlowMeshError(Exception):
    """Root of every error FlowMesh raises on purpose. ``str(err)`` says what to fix."""

    status_code: ClassVar[int] = 500


class ConfigError(FlowMeshError):
    """The configuration cannot work; the message names the setting and what to set."""


class UnknownSettingError(ConfigError):
    """A settings key (file or ``FLOWMESH_*`` variable) that FlowMesh does not know."""


class UnsupportedSchemeError(ConfigError):
    """A store URL whose scheme has no backend."""


class InvalidInputError(FlowMeshError):
    """The caller sent something malformed; nothing was stored."""

    status_code = 400


class InvalidDigestError(InvalidInputError):
    """A digest string that is not ``sha256:`` followed by 64 lowercase hex digits."""


class InputTooLargeError(InvalidInputError):
    """An inline value larger than the configured limit."""

    status_code = 413


class DigestMismatchError(InvalidInputError):
    """Bytes sent to be stored under a digest that they do not hash to; nothing was stored."""


class UnknownKindError(InvalidInputError):
    """An operator kind that nothing has registered."""


class InvalidParamsError(InvalidInputError):
    """Operator params that the kind's params model rejects."""


class InvalidOperatorError(InvalidInputError):
    """An operator or workflow that is well-formed JSON but cannot run as written."""


class UnknownModelError(InvalidInputError):
    """A model no worker may serve: not a known id, or a path outside the model roots."""


class ItemRejectedError(InvalidInputError):
    """An item whose inputs or params its executor cannot use (a template field the
    record lacks, a text that is not a string, a score that is not a number).

    The failure is deterministic: the same item fails the same way on every worker, so
    the control plane fails it at once instead of retrying it ``max_attempts`` times.
    Executors raise it (or return an ``ItemError`` marked deterministic) only for what
    the request itself got wrong; a model that does not load or a blob store that does
    not answer is not that.
    """


class AuthenticationError(FlowMeshError):
    """No bearer token, or a token that no tenant holds."""

    status_code = 401


class PermissionDeniedError(FlowMeshError):
    """The tenant is known but may not do this (cluster-wide views need an admin)."""

    status_code = 403


class NotFoundError(FlowMeshError):
    """The thing named does not exist (or is not visible to the caller)."""

    status_code = 404


class BlobNotFoundError(NotFoundError):
    """No blob with that digest in the blob store."""


class ConflictError(FlowMeshError):
    """The request contradicts what is already recorded."""

    status_code = 409


class QuotaExceededError(FlowMeshError):
    """A tenant's quota (items in flight, submissions per second) refused the request;
    nothing was stored. ``retry_after`` is how many seconds to wait before trying again
    (the API sends it as ``Retry-After``; None when the answer did not say)."""

    status_code = 429

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IntegrityError(FlowMeshError):
    """Stored data does not match its content address."""


class CorruptBlobError(IntegrityError):
    """A blob's bytes do not hash to its digest (corrupt or truncated)."""


class ServiceUnavailableError(FlowMeshError):
    """A backing service does not answer; retrying later may work."""

    status_code = 503


class StoreUnavailableError(ServiceUnavailableError):
    """Redis (or the embedded store) cannot be reached or refused the command."""


class StreamGroupMissingError(StoreUnavailableError):
    """A stream read found no consumer group (Redis answered NOGROUP): Redis lost its data
    (restarted without persistence, failed over to an empty replica) or the stream was
    deleted. Creating the group again, and whatever else was lost, recovers."""


class BlobStoreUnavailableError(ServiceUnavailableError):
    """The blob backend (local disk or S3 API) cannot be reached or refused the request."""
