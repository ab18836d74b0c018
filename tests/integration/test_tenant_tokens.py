"""Rotating and revoking tenant tokens (docs/isolation.md, "Tokens"), as an operator does
it: ``flowmesh tenant create|rotate|revoke`` (click's runner, in a thread of its own, so
the command runs its own event loop as from a shell) on the real Redis, the API through
the harness on the same prefix. A stopped token is answered exactly like an
unknown one; a revoked tenant's workflows stay readable by an admin."""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from flowmesh_core.cli import main
from flowmesh_core.control import rotate_token
from tests.integration.api_harness import Harness

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The CLI stores tenants in a real Redis only (never in the embedded store)."""
    return redis_url


async def _flowmesh(harness: Harness, *args: str) -> Result:
    stray = {k: None for k in os.environ if k.startswith("FLOWMESH_") and k != "FLOWMESH_STATE_DIR"}
    env: dict[str, str | None] = {
        **stray,
        "FLOWMESH_REDIS_URL": harness.url,
        "FLOWMESH_KEY_PREFIX": harness.prefix,
    }
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, list(args), env=env)


async def _token(harness: Harness, *args: str) -> str:
    done = await _flowmesh(harness, "tenant", *args)
    assert done.exit_code == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("fm_")
    assert done.stdout == token + "\n"  # the token alone on stdout
    return token


def _answer(response: httpx.Response) -> tuple[int, Any, str | None]:
    return response.status_code, response.json(), response.headers.get("www-authenticate")


async def _submit(client: httpx.AsyncClient) -> str:
    op = {"kind": "embed", "model": "mini", "inputs": {"texts": ["kept"]}}
    response = await client.post("/v1/operators", json=op)
    assert response.status_code == 201, response.text
    wf_id: str = response.json()["workflow_id"]
    return wf_id


async def test_rotate_stops_the_old_token_at_once(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    old = await _token(harness, "create", "team-a")
    old_client = await harness.client(app, old)
    wf_id = await _submit(old_client)
    unknown = _answer(await (await harness.client(app, "fm_nobody")).get("/v1/stats"))
    assert unknown[0] == 401

    rotated = await _flowmesh(harness, "tenant", "rotate", "team-a")
    assert rotated.exit_code == 0, rotated.stderr
    assert "1 earlier token(s) stopped working" in rotated.stderr
    new = rotated.stdout.strip()
    assert new.startswith("fm_")
    assert new != old

    assert _answer(await old_client.get("/v1/stats")) == unknown  # same as unknown
    assert _answer(await old_client.get(f"/v1/workflows/{wf_id}")) == unknown
    new_client = await harness.client(app, new)
    mine = await new_client.get(f"/v1/workflows/{wf_id}")
    assert mine.status_code == 200, mine.text  # the tenant, not the token, owns its work
    assert (await new_client.get("/v1/stats")).json()["tenants"][0]["tenant"] == "team-a"


async def test_revoke_stops_every_token_and_keeps_the_work_for_the_admin(
    harness: Harness,
) -> None:
    app = await harness.app(run_scheduler=False)
    token = await _token(harness, "create", "team-a")
    admin = await harness.client(app, await _token(harness, "create", "ops", "--admin"))
    client = await harness.client(app, token)
    wf_id = await _submit(client)
    # A second live token (an older deployment's), made through the library: revoke
    # must stop it too.
    second, _ = await rotate_token(harness.store, "team-a")
    unknown = _answer(await (await harness.client(app, "fm_nobody")).get("/v1/stats"))

    revoked = await _flowmesh(harness, "tenant", "revoke", "team-a")
    assert revoked.exit_code == 0, revoked.stderr
    assert "token(s) stopped working" in revoked.stderr
    assert revoked.stdout == ""
    for stopped in (token, second):
        stale = await harness.client(app, stopped)
        assert _answer(await stale.get("/v1/stats")) == unknown
        assert _answer(await stale.post("/v1/operators", json={"kind": "embed"})) == unknown
    seen = await admin.get(f"/v1/workflows/{wf_id}")
    assert seen.status_code == 200, seen.text
    assert (await admin.get(f"/v1/workflows/{wf_id}/lineage")).json()[0]["tenant"] == "team-a"
    assert (await harness.store.tenant_record("team-a"))["revoked_at"]

    again = await _flowmesh(harness, "tenant", "revoke", "team-a")  # idempotent
    assert again.exit_code == 0, again.stderr
    assert "0 token(s) stopped working" in again.stderr
    reinstated = await _token(harness, "rotate", "team-a")
    back = await harness.client(app, reinstated)
    assert (await back.get(f"/v1/workflows/{wf_id}")).status_code == 200
    assert "revoked_at" not in await harness.store.tenant_record("team-a")


async def test_rotate_or_revoke_of_an_unknown_tenant_changes_nothing(harness: Harness) -> None:
    before = await harness.keys()
    for command in ("rotate", "revoke"):
        done = await _flowmesh(harness, "tenant", command, "nobody")
        assert done.exit_code == 2, done.stderr
        assert done.stdout == ""
        assert "no tenant 'nobody'" in done.stderr
        assert "Traceback" not in done.stderr
    assert await harness.keys() == before


async def test_create_takes_the_tenants_own_quotas(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    token = await _token(harness, "create", "team-q", "--max-in-flight", "7", "--submit-rate", "2")
    record = await harness.store.tenant_record("team-q")
    assert '"max_in_flight":7' in record["record"]
    assert '"submit_rate":2.0' in record["record"]
    assert (await (await harness.client(app, token)).get("/v1/stats")).status_code == 200
    bad = await _flowmesh(harness, "tenant", "create", "team-r", "--max-in-flight", "-1")
    assert bad.exit_code == 2
    assert "max_in_flight" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert await harness.store.tenant_record("team-r") == {}


async def test_quota_changes_a_tenants_own_limits_for_every_token(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    await _token(harness, "create", "team-q")
    token = await _token(harness, "rotate", "team-q")
    client = await harness.client(app, token)
    shown = await _flowmesh(harness, "tenant", "quota", "team-q")
    assert shown.exit_code == 0, shown.stderr
    assert "max_in_flight: the setting's (tenant_max_in_flight)" in shown.stdout

    changed = await _flowmesh(harness, "tenant", "quota", "team-q", "--max-in-flight", "1")
    assert changed.exit_code == 0, changed.stderr
    assert "max_in_flight: 1" in changed.stdout
    assert "submit_rate: the setting's" in changed.stdout
    op = {"kind": "embed", "model": "mini", "inputs": {"texts": ["one"]}}
    assert (await client.post("/v1/operators", json=op)).status_code == 201
    refused = await client.post("/v1/operators", json={**op, "inputs": {"texts": ["two"]}})
    assert refused.status_code == 429, refused.text

    back = await _flowmesh(harness, "tenant", "quota", "team-q", "--max-in-flight", "default")
    assert back.exit_code == 0, back.stderr
    again = await client.post("/v1/operators", json={**op, "inputs": {"texts": ["two"]}})
    assert again.status_code == 201, again.text

    for bad in (["--max-in-flight", "lots"], ["--submit-rate", "-2"]):
        done = await _flowmesh(harness, "tenant", "quota", "team-q", *bad)
        assert done.exit_code == 2, done.stdout
        assert "Traceback" not in done.stderr
    missing = await _flowmesh(harness, "tenant", "quota", "nobody", "--max-in-flight", "3")
    assert missing.exit_code == 2
    assert "no tenant 'nobody'" in missing.stderr


async def test_create_writes_the_token_to_a_new_owner_only_file(
    harness: Harness, tmp_path: Any
) -> None:
    app = await harness.app(run_scheduler=False)
    path = tmp_path / "keda.token"
    args = ("tenant", "create", "keda", "--admin", "--token-file", str(path))
    done = await _flowmesh(harness, *args)
    assert done.exit_code == 0, done.stderr
    assert done.stdout == ""  # nothing on the terminal
    assert str(path) in done.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    token = path.read_text()
    assert token.startswith("fm_")
    assert token.endswith("\n")
    assert token.count("\n") == 1
    admin = await harness.client(app, token.strip())
    assert (await admin.get("/v1/workers")).status_code == 200  # an admin-only view opens

    # a reinstall rotates the same tenant's token into a new file; the old token stops
    again = tmp_path / "keda-2.token"
    rotated = await _flowmesh(harness, "tenant", "rotate", "keda", "--token-file", str(again))
    assert rotated.exit_code == 0, rotated.stderr
    assert rotated.stdout == ""
    assert "1 earlier token(s) stopped working" in rotated.stderr
    assert again.stat().st_mode & 0o777 == 0o600
    assert (await admin.get("/v1/workers")).status_code == 401
    fresh = await harness.client(app, again.read_text().strip())
    assert (await fresh.get("/v1/workers")).status_code == 200


async def test_token_file_refusals_create_nothing_and_keep_the_file(
    harness: Harness, tmp_path: Any
) -> None:
    await _token(harness, "create", "taken")
    before = await harness.keys()
    kept = tmp_path / "old.token"
    kept.write_text("someone else's\n")
    exists = await _flowmesh(harness, "tenant", "create", "fresh", "--token-file", str(kept))
    assert exists.exit_code == 2
    assert "exists" in exists.stderr
    assert "Traceback" not in exists.stderr
    assert kept.read_text() == "someone else's\n"
    missing = tmp_path / "no-such-dir" / "x.token"
    nowhere = await _flowmesh(harness, "tenant", "create", "fresh", "--token-file", str(missing))
    assert nowhere.exit_code == 2
    assert "--token-file" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr
    clash = tmp_path / "clash.token"
    again = await _flowmesh(harness, "tenant", "create", "taken", "--token-file", str(clash))
    assert again.exit_code != 0
    assert "already exists" in again.stderr
    assert not clash.exists()  # a failed create leaves no token file behind
    nobody = await _flowmesh(harness, "tenant", "rotate", "nobody", "--token-file", str(clash))
    assert nobody.exit_code == 2
    assert not clash.exists()  # nor does a failed rotation
    assert await harness.keys() == before
    assert await harness.store.tenant_record("fresh") == {}


async def test_a_token_file_that_cannot_be_written_is_removed_and_says_how_to_recover(
    harness: Harness, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await harness.app(run_scheduler=False)
    real_write = os.write

    def full_disk_write(fd: int, data: Any) -> int:
        if bytes(data).startswith(b"fm_"):  # only the token's bytes meet a full disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def full_disk_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    path = tmp_path / "keda.token"
    with monkeypatch.context() as patched:
        patched.setattr(os, "write", full_disk_write)
        made = await _flowmesh(harness, "tenant", "create", "keda", "--token-file", str(path))
    assert made.exit_code == 2
    assert "Traceback" not in made.stderr
    assert "No space left on device" in made.stderr
    assert "flowmesh tenant rotate keda --token-file" in made.stderr
    assert not path.exists()

    old = await _token(harness, "rotate", "keda")  # what the error says to do works
    client = await harness.client(app, old)
    assert (await client.get("/v1/stats")).status_code == 200
    with monkeypatch.context() as patched:
        patched.setattr(os, "fsync", full_disk_fsync)
        rotated = await _flowmesh(harness, "tenant", "rotate", "keda", "--token-file", str(path))
    assert rotated.exit_code == 2
    assert "flowmesh tenant rotate keda --token-file" in rotated.stderr
    assert not path.exists()
    assert (await client.get("/v1/stats")).status_code == 401  # the old token did stop

    again = await _flowmesh(harness, "tenant", "rotate", "keda", "--token-file", str(path))
    assert again.exit_code == 0, again.stderr
    fresh = await harness.client(app, path.read_text().strip())
    assert (await fresh.get("/v1/stats")).status_code == 200
