"""``flowmesh cas`` and the clients' blob methods against a real ``flowmesh serve``.

``cas put``, ``cas get`` and ``cas grant|revoke|grants`` go through the API with a
tenant's token, never to the store directly: what one tenant uploads another cannot
read until it is granted, and without a token nothing is read at all
(docs/isolation.md).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowmesh_core.client import Client
from flowmesh_core.control import create_tenant
from flowmesh_core.errors import NotFoundError, PermissionDeniedError
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.store import BlobRecord, Store
from tests.integration.procs import FLOWMESH, Procs, process_env, until

# Each command is a new process: seconds apiece on a loaded CI machine.
pytestmark = pytest.mark.timeout(240)


@dataclass
class Served:
    """A server on the real Redis, and the environment of each of two tenants' shells."""

    url: str
    redis_url: str
    prefix: str
    env: dict[str, str]
    a: dict[str, str]
    b: dict[str, str]

    async def blob(self, digest: str) -> tuple[set[str], BlobRecord | None]:
        """The blob's owners and index record, as the server stored them."""
        store = Store.open(self.redis_url, self.prefix)
        try:
            return await store.blob_owners(digest), await store.blob(digest)
        finally:
            await store.aclose()


async def _tenants(redis_url: str, prefix: str) -> list[str]:
    store = Store.open(redis_url, prefix)
    try:
        return [(await create_tenant(store, name))[1] for name in ("team-a", "team-b")]
    finally:
        await store.aclose()


async def _purge(redis_url: str, prefix: str) -> None:
    store = Store.open(redis_url, prefix)
    try:
        await store.purge()
    finally:
        await store.aclose()


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module (starting one takes seconds on a loaded machine)."""
    prefix = f"fmtest-{uuid.uuid4().hex[:12]}"
    tmp = tmp_path_factory.mktemp("cas")
    env = process_env(redis_url, prefix, f"file://{tmp / 'blobs'}")
    procs = Procs(tmp / "logs", env)
    try:
        server = procs.serve()
        asyncio.run(until(server.healthy, 60, "flowmesh serve to answer", procs.logs))
        tokens = asyncio.run(_tenants(redis_url, prefix))
        env["FLOWMESH_SERVER_URL"] = server.url
        a, b = ({**env, "FLOWMESH_TOKEN": token} for token in tokens)
        yield Served(server.url, redis_url, prefix, env, a, b)
    finally:
        procs.close()
        asyncio.run(_purge(redis_url, prefix))


def flowmesh(
    *args: str, env: dict[str, str], stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [FLOWMESH, *args], env=env, input=stdin, capture_output=True, timeout=60, check=False
    )


def cas(*args: str, env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return flowmesh("cas", *args, env=env, stdin=stdin)


async def test_cas_put_and_get_go_through_the_api_as_the_tenant(
    served: Served, tmp_path: Path
) -> None:
    rows = b'["the cat sat", "on the mat"]' + os.urandom(300_000).hex().encode()
    source = tmp_path / "rows.json"
    source.write_bytes(rows)

    put = cas("put", str(source), env=served.a)
    assert put.returncode == 0, put.stderr
    digest = put.stdout.decode().strip()
    assert digest == digest_bytes(rows)
    assert served.url.encode() in put.stderr
    again = cas("put", "-", env=served.a, stdin=rows)
    assert again.returncode == 0, again.stderr
    assert again.stdout.decode().strip() == digest
    owners, record = await served.blob(digest)
    assert owners == {"team-a"}
    assert record is not None
    assert (record.size, record.media_type) == (len(rows), "application/json")

    assert cas("get", digest, env=served.a).stdout == rows
    target = tmp_path / "out.json"
    got = cas("get", digest, "-o", str(target), env=served.a)
    assert got.returncode == 0, got.stderr
    assert target.read_bytes() == rows


async def test_cas_get_reads_only_what_the_tenant_may_and_nothing_without_a_token(
    served: Served, tmp_path: Path
) -> None:
    source = tmp_path / "secret.txt"
    source.write_bytes(b"team A's secret")
    digest = cas("put", str(source), env=served.a).stdout.decode().strip()
    unknown = digest_bytes(b"nobody uploaded this")

    theirs = cas("get", digest, env=served.b)
    nobodys = cas("get", unknown, env=served.b)
    assert theirs.returncode == nobodys.returncode == 2
    assert theirs.stderr.replace(digest.encode(), b"D") == nobodys.stderr.replace(
        unknown.encode(), b"D"
    )
    assert b"secret" not in theirs.stdout + theirs.stderr
    assert not (tmp_path / "stolen").exists()
    assert cas("get", digest, "-o", str(tmp_path / "stolen"), env=served.b).returncode == 2
    assert not (tmp_path / "stolen").exists()

    for args in (("get", digest), ("put", str(source))):
        anonymous = cas(*args, env=served.env)
        assert anonymous.returncode == 2, anonymous.stdout
        assert b"no FlowMesh token" in anonymous.stderr
        assert anonymous.stdout == b""
        assert b"Traceback" not in anonymous.stderr
    token = served.a["FLOWMESH_TOKEN"]
    by_option = flowmesh("--token", token, "cas", "get", digest, env=served.env)
    assert by_option.stdout == b"team A's secret", by_option.stderr


async def test_cas_grant_lets_another_tenant_read_until_cas_revoke(
    served: Served, tmp_path: Path
) -> None:
    source = tmp_path / "shared.txt"
    source.write_bytes(b"team A shares this with B")
    digest = cas("put", str(source), env=served.a).stdout.decode().strip()
    assert cas("get", digest, env=served.b).returncode == 2

    granted = cas("grant", digest, "team-b", env=served.a)
    assert granted.returncode == 0, granted.stderr
    assert b"team-b may read" in granted.stderr
    assert cas("get", digest, env=served.b).stdout == b"team A shares this with B"
    listed = cas("grants", digest, env=served.a)
    assert listed.stdout == b"team-b\tteam-a\n", listed.stderr
    every = cas("grants", env=served.a)  # without DIGEST: every grant A made
    assert every.returncode == 0, every.stderr
    assert f"{digest}\tteam-b\n".encode() in every.stdout
    assert digest.encode() not in cas("grants", env=served.b).stdout
    stats = flowmesh("stats", env=served.a)
    assert stats.returncode == 0, stats.stderr
    assert b"grants held" in stats.stdout
    assert b"team-b" not in stats.stdout  # A sees its own use only
    passed_on = cas("grant", digest, "team-a", env=served.b)  # B may not pass it on
    assert passed_on.returncode == 2
    assert b"not passed on" in passed_on.stderr
    assert b"Traceback" not in passed_on.stderr

    revoked = cas("revoke", digest, "team-b", env=served.a)
    assert revoked.returncode == 0, revoked.stderr
    assert cas("grants", digest, env=served.a).stdout == b""
    assert digest.encode() not in cas("grants", env=served.a).stdout
    assert cas("get", digest, env=served.b).returncode == 2
    for command in ("grant", "revoke", "grants"):
        assert b"DIGEST" in cas(command, "--help", env=served.env).stdout


def test_the_client_grants_lists_and_revokes(served: Served) -> None:
    data = os.urandom(1000)
    with (
        Client(served.url, served.a["FLOWMESH_TOKEN"]) as a,
        Client(served.url, served.b["FLOWMESH_TOKEN"]) as b,
    ):
        digest = a.put_blob(data)
        grant = a.grant_blob(digest, "team-b")
        assert (grant.tenant, grant.grantor) == ("team-b", "team-a")
        assert a.grant_blob(digest, "team-b") == grant  # idempotent
        assert a.list_blob_grants(digest) == [grant]
        assert (digest, "team-b") in {(g.digest, g.tenant) for g in a.list_grants().grants}
        assert b.get_blob(digest) == data
        assert b.list_blob_grants(digest) == []
        with pytest.raises(PermissionDeniedError, match="not passed on"):
            b.grant_blob(digest, "team-c")
        a.revoke_blob_grant(digest, "team-b")
        a.revoke_blob_grant(digest, "team-b")
        assert digest not in {g.digest for g in a.list_grants().grants}
        with pytest.raises(NotFoundError, match=f"no blob {digest} for this tenant"):
            b.get_blob(digest)
        with pytest.raises(NotFoundError, match=f"no blob {digest} for this tenant"):
            b.grant_blob(digest, "team-c")


async def test_a_real_worker_computes_on_a_granted_blob_for_the_grantee(
    served: Served, tmp_path: Path
) -> None:
    """End to end: a ``flowmesh worker`` process reads A's blob for B's workflow once A
    granted it, and B's result holds A's rows; without the grant B's submission is
    refused like an unknown digest."""
    rows = [f"granted-row-{uuid.uuid4().hex[:8]}", "shared", "shared"]
    doc = {"kind": "data.dedup", "inputs": {"items": {"blob": "D"}}}
    procs = Procs(tmp_path / "logs", served.env)
    try:
        procs.worker("w-grants")
        with (
            Client(served.url, served.a["FLOWMESH_TOKEN"]) as a,
            Client(served.url, served.b["FLOWMESH_TOKEN"]) as b,
        ):
            digest = a.put_blob(json.dumps(rows).encode(), media_type="application/json")
            op = {**doc, "inputs": {"items": {"blob": digest}}}
            with pytest.raises(NotFoundError, match=f"no blob {digest} for this tenant"):
                b.submit_operator(op)
            a.grant_blob(digest, "team-b")
            submitted = b.submit_operator(op)
            status = b.wait(submitted.workflow_id, timeout=120)
            assert status.state == "done", (status, procs.logs())
            (node,) = status.nodes
            assert node.result_digest is not None
            assert b.result_value(node.result_digest) == [rows[0], "shared"]
    finally:
        procs.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("get", "../../etc/passwd"), b"malformed digest"),
        (("put", "/nonexistent/file"), b"not a readable file"),
        (("grant", "sha256:nothex", "team-b"), b"malformed digest"),
        (("revoke", "not-a-digest", "team-b"), b"malformed digest"),
        (("grants", "sha256:"), b"malformed digest"),
    ],
)
def test_cas_mistakes_are_one_line_errors(args: tuple[str, ...], message: bytes) -> None:
    result = cas(*args, env={"FLOWMESH_TOKEN": "fm_x", "PATH": os.environ["PATH"]})
    assert result.returncode == 2
    assert message in result.stderr
    assert b"Traceback" not in result.stderr


class _Pipe(io.RawIOBase):
    """A binary file that cannot seek, as stdin from a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(buffer), 4096))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_the_client_uploads_bytes_paths_and_files_and_reads_them_back(
    served: Served, tmp_path: Path
) -> None:
    data = os.urandom(3 << 20)
    digest = digest_bytes(data)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with Client(served.url, served.a["FLOWMESH_TOKEN"]) as a:
        assert a.put_blob(data) == digest
        assert a.put_blob(path) == digest
        assert a.put_blob(str(path)) == digest
        with path.open("rb") as handle:
            handle.read(10)  # a file is read from where it stands
            assert a.put_blob(handle) == digest_bytes(data[10:])
        assert a.put_blob(_Pipe(data)) == digest
        assert a.get_blob(digest) == data
        target = tmp_path / "back.bin"
        assert a.download_blob(digest, target) == len(data)
        assert target.read_bytes() == data
    with Client(served.url, served.b["FLOWMESH_TOKEN"]) as b:
        with pytest.raises(NotFoundError, match="for this tenant"):
            b.get_blob(digest)
        with pytest.raises(NotFoundError, match="for this tenant"):
            b.download_blob(digest, tmp_path / "nope.bin")
        assert not (tmp_path / "nope.bin").exists()
