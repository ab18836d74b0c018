"""The blocking client: ``Client`` sends the calls described in ``_shared`` over httpx.Client.

It holds no API knowledge of its own (paths, parsing, errors and verification are in
``_shared``), so it must never grow logic that ``AsyncClient`` would then lack.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from flowmesh_core.client import _shared as s
from flowmesh_core.client._blobs import (
    BlobSource,
    BlobSourceLike,
    blob_call,
    blob_grants_call,
    grant_blob_call,
    grants_made_call,
    put_blob_call,
    revoke_blob_grant_call,
)
from flowmesh_core.client._errors import check_response, transport_errors
from flowmesh_core.manifest import parse_manifest
from flowmesh_core.models import LineageRecord, Operator, Workflow
from flowmesh_core.models.api import (
    BlobGrant,
    StatsReport,
    SubmitResult,
    TenantGrants,
    WorkerState,
    WorkflowStatus,
)

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """A blocking FlowMesh client. Use ``with Client() as c:`` or call ``close()``.

    ``url`` and ``token`` default to the settings (FLOWMESH_SERVER_URL, FLOWMESH_TOKEN,
    flowmesh.toml). Every error is a FlowMeshError: the server's errors keep their class
    and message; an unreachable server is a ServiceUnavailableError naming the URL.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._config = s.resolve_config(url, token, timeout)
        self._http = httpx.Client(base_url=self._config.base_url, transport=transport)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._config.base_url

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        self._http.close()

    def _call(self, call: s.Call[T]) -> T:
        request = s.build_request(self._http, self._config, call)
        with transport_errors(self._config.base_url, request):
            response = self._http.send(request)
        return s.finish(call, response)

    def submit_workflow(
        self, workflow: Workflow | Mapping[str, Any] | str, *, idempotency_key: str | None = None
    ) -> SubmitResult:
        """Submit a workflow (a model, a mapping, or YAML/JSON text); its id and plan.

        ``idempotency_key``: a retry that sends the same key gets the same submission
        back (``replayed``) instead of creating a second one.
        """
        return self._call(s.submit_workflow_call(workflow, idempotency_key))

    def submit_operator(
        self, operator: Operator | Mapping[str, Any] | str, *, idempotency_key: str | None = None
    ) -> SubmitResult:
        """Submit one operator as a one-node workflow (the node is named ``op``).

        ``idempotency_key``: a retry that sends the same key gets the same submission
        back (``replayed``) instead of creating a second one.
        """
        return self._call(s.submit_operator_call(operator, idempotency_key))

    def status(self, workflow_id: str, *, lineage: bool = True) -> WorkflowStatus:
        """The workflow's status now, with each node's lineage unless ``lineage=False``."""
        return self._call(s.status_call(workflow_id, lineage))

    def wait(
        self,
        workflow_id: str,
        *,
        timeout: float | None = None,
        lineage: bool = False,
        progress: Callable[[WorkflowStatus], object] | None = None,
    ) -> WorkflowStatus:
        """Wait until the workflow is done, failed or cancelled, or ``timeout`` seconds pass.

        Never raises for a timeout: it returns the last status seen, so check ``.state``
        (``NodeState.DONE``, ``FAILED``, ``CANCELLED``, or still running).
        ``timeout=None`` waits forever. ``progress``, when given, is called with each
        status that is not final, about every ``PROGRESS_EVERY_S`` seconds (pass
        ``lineage=True`` for item counts; ``progress_summary`` makes it one line).
        """
        loop = s.WaitLoop(workflow_id, timeout, lineage, progress=progress)
        while (call := loop.next_call()) is not None:
            loop.feed(self._call(call))
        return loop.last

    def cancel_workflow(self, workflow_id: str) -> WorkflowStatus:
        """Cancel the workflow (``DELETE /v1/workflows/{id}``); its status afterwards.

        Idempotent and safe to call at any time: a workflow already done, failed or
        cancelled is left as it was and its status returned (check ``.state``). Its
        items that no other requester needs stop (leave the queue, or finish on their
        worker charged to nobody); work another workflow or tenant also asked for goes
        on for them. NotFoundError for an id that is not this tenant's.
        """
        return self._call(s.cancel_call(workflow_id))

    def lineage(self, workflow_id: str) -> list[LineageRecord]:
        """One record per (node, item): how each was satisfied, where it ran, what it cost."""
        return self._call(s.lineage_call(workflow_id))

    def result(self, digest: str) -> bytes:
        """A result blob's bytes, verified; CorruptBlobError if they do not hash to ``digest``."""
        return self._call(s.result_call(digest))

    def results_json(self, digests: Sequence[str]) -> dict[str, Any]:
        """Many results at once, each decoded as JSON, in one request (small results
        come from Redis in one round trip); NotFoundError if any is not yours."""
        return self._call(s.results_json_call(digests))

    def result_json(self, digest: str) -> Any:
        """A result blob decoded as JSON, after the same verification as ``result``."""
        return self._call(s.result_json_call(digest))

    def result_value(self, digest: str) -> Any:
        """The result at ``digest`` as a value, as the adapters hand it to tasks.

        A split node's manifest is resolved: the list of its items' values, in item
        order (read in one request per 10,000 items). Any other JSON result is its
        decoded value; a result that is not JSON comes back as its verified bytes.
        NotFoundError when the result, or any item it lists, is not yours.
        """
        value = s.decode_value(self.result(digest))
        items = None if isinstance(value, bytes) else parse_manifest(value)
        if items is None:
            return value
        found: dict[str, Any] = {}
        for batch in s.read_batches(items):
            found.update(self.results_json(batch))
        return [found[item] for item in items]

    def download(self, digest: str, path: str | os.PathLike[str]) -> int:
        """Stream a result blob into ``path``, verified; the number of bytes written.

        ``path`` is replaced only once every byte is verified; on a mismatch or any error
        nothing is left at or beside it.
        """
        return self._download(s.result_call(digest), digest, path)

    def put_blob(self, source: BlobSourceLike, *, media_type: str | None = None) -> str:
        """Upload bytes, a local file (a str or path) or a binary file object; its digest.

        The server checks the bytes against the digest and makes this tenant an owner:
        the digest can then be an operator input (``{"blob": digest}``) of this tenant's
        workflows, and read back with ``get_blob``. Other tenants cannot (docs/isolation.md).
        A file streams; it is never held in memory whole. ``media_type`` is recorded with
        the blob (default ``application/octet-stream``).
        """
        with BlobSource(source) as blob:
            return self._call(put_blob_call(blob, blob.chunks(), media_type))

    def get_blob(self, digest: str) -> bytes:
        """A blob this tenant uploaded, a result its lineage holds, or a blob granted to
        it: its bytes, verified (NotFoundError for any other digest, whether it exists or
        not)."""
        return self._call(blob_call(digest))

    def grant_blob(self, digest: str, tenant: str) -> BlobGrant:
        """Let ``tenant`` read the blob ``digest`` and use it as an input; the grant.

        This tenant must have uploaded the blob or made it in a workflow (NotFoundError
        otherwise, as for an unknown digest; PermissionDeniedError for a blob this tenant
        holds only by a grant: a grant is not passed on). Idempotent. The answer is the
        same whether or not ``tenant`` exists. QuotaExceededError past the server's
        ``max_grants_per_tenant`` (docs/isolation.md, "Grants")."""
        return self._call(grant_blob_call(digest, tenant))

    def revoke_blob_grant(self, digest: str, tenant: str) -> None:
        """Withdraw this tenant's grant of ``digest`` to ``tenant`` (idempotent); other
        tenants' grants to ``tenant`` stand."""
        return self._call(revoke_blob_grant_call(digest, tenant))

    def list_blob_grants(self, digest: str) -> list[BlobGrant]:
        """The grants of ``digest`` this tenant made (an admin token: everyone's)."""
        return self._call(blob_grants_call(digest))

    def list_grants(self, after: str | None = None, limit: int = 1000) -> TenantGrants:
        """A page of the grants this tenant made, over every blob, sorted by digest then
        grantee: up to ``limit`` (at most 10,000), after ``after`` (the ``next`` of the
        page before; None: the first page). ``next`` is None on the last page."""
        return self._call(grants_made_call(after, limit))

    def download_blob(self, digest: str, path: str | os.PathLike[str]) -> int:
        """``get_blob`` streamed into ``path`` (replaced only once every byte is verified);
        the number of bytes written."""
        return self._download(blob_call(digest), digest, path)

    def _download(self, call: s.Call[bytes], digest: str, path: str | os.PathLike[str]) -> int:
        request = s.build_request(self._http, self._config, call)
        with transport_errors(self._config.base_url, request):
            response = self._http.send(request, stream=True)
            try:
                if response.is_error:
                    response.read()
                    check_response(response)
                with s.VerifiedDownload(digest, path) as sink:
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
                    return sink.commit()
            finally:
                response.close()

    def stats(self) -> StatsReport:
        """Requested vs executed work, batching and cost: this tenant's and cluster-wide."""
        return self._call(s.stats_call())

    def workers(self) -> list[WorkerState]:
        """Every registered worker (admin tenants only: PermissionDeniedError otherwise)."""
        return self._call(s.workers_call())

    def health(self) -> dict[str, Any]:
        """The server's health report; needs no token.

        A replica whose checks fail answers 503: that is a ServiceUnavailableError whose
        message carries the report.
        """
        return self._call(s.health_call())
