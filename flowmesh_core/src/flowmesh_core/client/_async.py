"""The asyncio client: ``AsyncClient`` sends the calls described in ``_shared`` over httpx.

It mirrors ``Client`` method for method and holds no API knowledge of its own (paths,
parsing, errors and verification are in ``_shared``); it must never grow logic that the
blocking client would then lack, and must never block the event loop on the network.
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

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """An asyncio FlowMesh client. Use ``async with AsyncClient() as c:`` or ``aclose()``.

    Same arguments, methods and errors as ``Client``; every method is a coroutine.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = s.resolve_config(url, token, timeout)
        self._http = httpx.AsyncClient(base_url=self._config.base_url, transport=transport)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._config.base_url

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        await self._http.aclose()

    async def _call(self, call: s.Call[T]) -> T:
        request = s.build_request(self._http, self._config, call)
        with transport_errors(self._config.base_url, request):
            response = await self._http.send(request)
        return s.finish(call, response)

    async def submit_workflow(
        self, workflow: Workflow | Mapping[str, Any] | str, *, idempotency_key: str | None = None
    ) -> SubmitResult:
        """Submit a workflow (a model, a mapping, or YAML/JSON text); its id and plan.

        ``idempotency_key``: a retry that sends the same key gets the same submission
        back (``replayed``) instead of creating a second one.
        """
        return await self._call(s.submit_workflow_call(workflow, idempotency_key))

    async def submit_operator(
        self, operator: Operator | Mapping[str, Any] | str, *, idempotency_key: str | None = None
    ) -> SubmitResult:
        """Submit one operator as a one-node workflow (the node is named ``op``).

        ``idempotency_key``: a retry that sends the same key gets the same submission
        back (``replayed``) instead of creating a second one.
        """
        return await self._call(s.submit_operator_call(operator, idempotency_key))

    async def status(self, workflow_id: str, *, lineage: bool = True) -> WorkflowStatus:
        """The workflow's status now, with each node's lineage unless ``lineage=False``."""
        return await self._call(s.status_call(workflow_id, lineage))

    # The deadline spans many requests and the API matches Client's, hence timeout=.
    async def wait(
        self,
        workflow_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
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
            loop.feed(await self._call(call))
        return loop.last

    async def cancel_workflow(self, workflow_id: str) -> WorkflowStatus:
        """Cancel the workflow (``DELETE /v1/workflows/{id}``); its status afterwards.

        Idempotent and safe to call at any time: a workflow already done, failed or
        cancelled is left as it was and its status returned (check ``.state``). Its
        items that no other requester needs stop (leave the queue, or finish on their
        worker charged to nobody); work another workflow or tenant also asked for goes
        on for them. NotFoundError for an id that is not this tenant's.
        """
        return await self._call(s.cancel_call(workflow_id))

    async def lineage(self, workflow_id: str) -> list[LineageRecord]:
        """One record per (node, item): how each was satisfied, where it ran, what it cost."""
        return await self._call(s.lineage_call(workflow_id))

    async def result(self, digest: str) -> bytes:
        """A result blob's bytes, verified; CorruptBlobError if they do not hash to ``digest``."""
        return await self._call(s.result_call(digest))

    async def results_json(self, digests: Sequence[str]) -> dict[str, Any]:
        """Many results at once, each decoded as JSON, in one request (small results
        come from Redis in one round trip); NotFoundError if any is not yours."""
        return await self._call(s.results_json_call(digests))

    async def result_json(self, digest: str) -> Any:
        """A result blob decoded as JSON, after the same verification as ``result``."""
        return await self._call(s.result_json_call(digest))

    async def result_value(self, digest: str) -> Any:
        """The result at ``digest`` as a value, as the adapters hand it to tasks.

        A split node's manifest is resolved: the list of its items' values, in item
        order (read in one request per 10,000 items). Any other JSON result is its
        decoded value; a result that is not JSON comes back as its verified bytes.
        NotFoundError when the result, or any item it lists, is not yours.
        """
        value = s.decode_value(await self.result(digest))
        items = None if isinstance(value, bytes) else parse_manifest(value)
        if items is None:
            return value
        found: dict[str, Any] = {}
        for batch in s.read_batches(items):
            found.update(await self.results_json(batch))
        return [found[item] for item in items]

    async def download(self, digest: str, path: str | os.PathLike[str]) -> int:
        """Stream a result blob into ``path``, verified; the number of bytes written.

        ``path`` is replaced only once every byte is verified; on a mismatch or any error
        nothing is left at or beside it. (The file writes are local and small per chunk.)
        """
        return await self._download(s.result_call(digest), digest, path)

    async def put_blob(self, source: BlobSourceLike, *, media_type: str | None = None) -> str:
        """Upload bytes, a local file (a str or path) or a binary file object; its digest.

        As ``Client.put_blob``. The source is hashed before sending (its digest is in the
        URL); those reads are local.
        """
        with BlobSource(source) as blob:
            return await self._call(put_blob_call(blob, blob.achunks(), media_type))

    async def get_blob(self, digest: str) -> bytes:
        """A blob this tenant uploaded, a result its lineage holds, or a blob granted to
        it: its bytes, verified (NotFoundError for any other digest, whether it exists or
        not)."""
        return await self._call(blob_call(digest))

    async def grant_blob(self, digest: str, tenant: str) -> BlobGrant:
        """Let ``tenant`` read the blob ``digest`` and use it as an input; the grant.

        This tenant must have uploaded the blob or made it in a workflow (NotFoundError
        otherwise, as for an unknown digest; PermissionDeniedError for a blob this tenant
        holds only by a grant: a grant is not passed on). Idempotent. The answer is the
        same whether or not ``tenant`` exists. QuotaExceededError past the server's
        ``max_grants_per_tenant`` (docs/isolation.md, "Grants")."""
        return await self._call(grant_blob_call(digest, tenant))

    async def revoke_blob_grant(self, digest: str, tenant: str) -> None:
        """Withdraw this tenant's grant of ``digest`` to ``tenant`` (idempotent); other
        tenants' grants to ``tenant`` stand."""
        return await self._call(revoke_blob_grant_call(digest, tenant))

    async def list_blob_grants(self, digest: str) -> list[BlobGrant]:
        """The grants of ``digest`` this tenant made (an admin token: everyone's)."""
        return await self._call(blob_grants_call(digest))

    async def list_grants(self, after: str | None = None, limit: int = 1000) -> TenantGrants:
        """A page of the grants this tenant made, over every blob, sorted by digest then
        grantee: up to ``limit`` (at most 10,000), after ``after`` (the ``next`` of the
        page before; None: the first page). ``next`` is None on the last page."""
        return await self._call(grants_made_call(after, limit))

    async def download_blob(self, digest: str, path: str | os.PathLike[str]) -> int:
        """``get_blob`` streamed into ``path`` (replaced only once every byte is verified);
        the number of bytes written."""
        return await self._download(blob_call(digest), digest, path)

    async def _download(
        self, call: s.Call[bytes], digest: str, path: str | os.PathLike[str]
    ) -> int:
        request = s.build_request(self._http, self._config, call)
        with transport_errors(self._config.base_url, request):
            response = await self._http.send(request, stream=True)
            try:
                if response.is_error:
                    await response.aread()
                    check_response(response)
                with s.VerifiedDownload(digest, path) as sink:
                    async for chunk in response.aiter_bytes():
                        sink.write(chunk)
                    return sink.commit()
            finally:
                await response.aclose()

    async def stats(self) -> StatsReport:
        """Requested vs executed work, batching and cost: this tenant's and cluster-wide."""
        return await self._call(s.stats_call())

    async def workers(self) -> list[WorkerState]:
        """Every registered worker (admin tenants only: PermissionDeniedError otherwise)."""
        return await self._call(s.workers_call())

    async def health(self) -> dict[str, Any]:
        """The server's health report; needs no token.

        A replica whose checks fail answers 503: that is a ServiceUnavailableError whose
        message carries the report.
        """
        return await self._call(s.health_call())
