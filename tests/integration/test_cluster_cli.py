"""``flowmesh up`` and ``flowmesh down`` as a user runs them: a real local cluster.

``up`` starts a real control plane and two real workers on the real Redis (a fresh key
prefix, purged afterwards) with a temporary state directory; work is submitted with
``flowmesh submit --wait`` and the token ``up`` printed; ``down`` stops it all. Whatever
the test leaves running (it failed half-way) is killed from the state file.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from flowmesh_core.client import Client
from flowmesh_core.errors import NotFoundError, ServiceUnavailableError
from flowmesh_core.settings import load_settings
from flowmesh_core.store import Store
from flowmesh_core.store.embedded import EmbeddedServer
from flowmesh_worker import cluster
from flowmesh_worker.cluster import STATE_FILE, process_alive, read_state
from tests.integration.procs import FLOWMESH, free_port, process_env

# Stands in for `flowmesh`: a worker that dies at once, or (with "hang") never registers,
# and a control plane that never answers; each ignores SIGTERM when told to.
FAKE_FLOWMESH = """
import signal, sys, time
if "stubborn" in sys.argv[0]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM", flush=True)
if sys.argv[1] == "worker" and "hang" not in sys.argv[0]:
    print("boom: this worker cannot start", flush=True)
    sys.exit(3)
time.sleep(600)
"""


def flowmesh(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWMESH, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def exports(stdout: str) -> dict[str, str]:
    """The ``export NAME=value`` lines of ``up``'s stdout."""
    pairs = (line.removeprefix("export ").split("=", 1) for line in stdout.splitlines())
    return {name: value for name, value in pairs}


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """The cluster's state directory; anything still listed there is killed at the end,
    and its embedded store stopped."""
    directory = tmp_path / "state"
    yield directory
    state = read_state(directory)
    for proc in state.processes if state else []:
        if process_alive(proc.pid, proc.started):
            os.kill(proc.pid, signal.SIGKILL)
    EmbeddedServer(directory).stop(force=True)


@pytest.fixture
async def purged(redis_url: str, key_prefix: str) -> AsyncIterator[None]:
    yield
    store = Store.open(redis_url, key_prefix)
    try:
        await store.purge()
    finally:
        await store.aclose()


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("purged")
def test_up_runs_a_local_cluster_that_down_stops(
    redis_url: str, key_prefix: str, tmp_path: Path, state_dir: Path
) -> None:
    env = process_env(redis_url, key_prefix, f"file://{tmp_path / 'blobs'}")
    port = str(free_port())
    common = ["--state-dir", str(state_dir)]
    up = flowmesh("up", "--workers", "2", "--port", port, "--timeout", "90", *common, env=env)
    assert up.returncode == 0, up.stderr
    exported = exports(up.stdout)
    assert exported["FLOWMESH_SERVER_URL"] == f"http://127.0.0.1:{port}"
    assert exported["FLOWMESH_TOKEN"].startswith("fm_")
    state_file = state_dir / STATE_FILE
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    state = read_state(state_dir)
    assert state is not None
    assert state.token == exported["FLOWMESH_TOKEN"]
    assert state.key_prefix == key_prefix
    assert [p.role for p in state.processes] == ["control plane", "worker", "worker"]
    assert all(process_alive(p.pid, p.started) for p in state.processes)
    for proc in state.processes:  # the summary names each process and its log
        assert str(proc.pid) in up.stderr
        assert Path(proc.log).name in up.stderr
        assert Path(proc.log).parent == state_dir / "logs"
    assert f"logs in {state_dir / 'logs'}" in up.stderr

    again = flowmesh("up", "--port", str(free_port()), *common, env=env)
    assert again.returncode == 2
    assert "already running" in again.stderr
    assert "flowmesh down" in again.stderr
    assert read_state(state_dir) == state  # the refusal changed nothing

    operator = tmp_path / "op.yaml"
    operator.write_text(
        "kind: data.template\nparams: {template: 'Hello, {name}.'}\n"
        "inputs:\n  records: [{name: Ada}, {name: Grace}, {name: Edsger}]\n"
    )
    client_env = {**env, **exported}
    submitted = flowmesh("submit", str(operator), "--wait", "--json", env=client_env, timeout=60)
    assert submitted.returncode == 0, submitted.stderr + _logs(state_dir)
    status = json.loads(submitted.stdout)
    assert status["state"] == "done"
    workers = {r["worker"] for r in status["nodes"][0]["lineage"]}
    assert workers <= {p.name for p in state.processes if p.role == "worker"}

    down = flowmesh("down", "--timeout", "30", *common, env=env)
    assert down.returncode == 0, down.stderr
    assert "stopped 3 process(es)" in down.stderr
    assert "killed" not in down.stderr
    assert not state_file.exists()
    assert not any(process_alive(p.pid, p.started) for p in state.processes)
    assert "Traceback" not in _logs(state_dir)

    nothing = flowmesh("down", *common, env=env)
    assert nothing.returncode == 0
    assert "no local cluster is running" in nothing.stderr


@pytest.mark.timeout(240)
def test_up_with_no_redis_url_runs_on_the_embedded_store_and_keeps_it(
    tmp_path: Path, state_dir: Path
) -> None:
    """No FLOWMESH_REDIS_URL and no Redis needed: `up` starts the state directory's
    embedded server, its processes share it, `down` stops it, and what it holds (the
    tenant, the action cache) is still there at the next `up`."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLOWMESH_")}
    env["FLOWMESH_BLOB_URL"] = f"file://{tmp_path / 'blobs'}"
    common = ["--state-dir", str(state_dir)]
    operator = tmp_path / "op.yaml"
    operator.write_text(
        "kind: data.template\nparams: {template: 'Hi, {name}.'}\n"
        "inputs:\n  records: [{name: Ada}, {name: Grace}]\n"
    )
    server = EmbeddedServer(state_dir)
    executed = []
    for _ in range(2):
        port = str(free_port())
        up = flowmesh("up", "--workers", "1", "--port", port, *common, env=env, timeout=150)
        assert up.returncode == 0, up.stderr + _logs(state_dir)
        assert server.answers()
        state = read_state(state_dir)
        assert state is not None
        assert "embedded" in state.redis_url or state.redis_url == "memory://"
        assert set(server.owners()) == {p.pid for p in state.processes}
        # The token of the first `up` is kept in the state directory and still valid.
        client_env = {**env, **exports(up.stdout)}
        done = flowmesh("submit", str(operator), "--wait", "--json", env=client_env, timeout=60)
        assert done.returncode == 0, done.stderr + _logs(state_dir)
        status = json.loads(done.stdout)
        assert status["state"] == "done"
        lineage = status["nodes"][0]["lineage"]
        executed.append(sum(1 for r in lineage if r["satisfied_by"] == "executed"))
        down = flowmesh("down", *common, env=env)
        assert down.returncode == 0, down.stderr
        assert "stopped the embedded store" in down.stderr, down.stderr
        assert not server.answers()
        assert server.pid() is None
    assert executed == [2, 0]  # the second time, the action cache (persisted) answered

    wiped = flowmesh("down", "--wipe", *common, env=env)
    assert wiped.returncode == 0, wiped.stderr
    assert not server.data_dir.exists()


@pytest.fixture
def fake_flowmesh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], Path]]:
    """``install(name)`` makes ``cluster.up`` start FAKE_FLOWMESH, saved as ``name``
    (which says how it behaves: hang, stubborn), instead of ``flowmesh``."""
    installed: list[Path] = []

    def install(name: str) -> Path:
        script = tmp_path / name
        script.write_text(textwrap.dedent(FAKE_FLOWMESH))
        monkeypatch.setattr(cluster._up, "flowmesh_argv", lambda: [sys.executable, str(script)])
        installed.append(script)
        return script

    yield install
    for pid in [pid for script in installed for pid in _running(script)]:
        os.kill(pid, signal.SIGKILL)


def _running(script: Path) -> list[int]:
    """Processes running ``script`` (not zombies)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(script).encode() in cmdline and process_alive(int(proc.name)):
            pids.append(int(proc.name))
    return pids


@pytest.mark.usefixtures("purged")
@pytest.mark.parametrize(
    ("script_name", "timeout_s", "expected"),
    [
        (
            "fake.py",
            60.0,
            r"the worker local-1-\w+ \(pid \d+\) exited \(status 3\) while starting; "
            r"see its log .*worker-1\.log \(last line: boom: this worker cannot start\)",
        ),
        (
            "hang.py",
            2.0,
            r"not ready within 2 s: serve \(log .*serve\.log\), local-1-\w+ "
            r"\(log .*worker-1\.log\); --timeout gives more time",
        ),
    ],
)
def test_up_that_fails_says_why_names_the_log_and_leaves_nothing_running(
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    fake_flowmesh: Callable[[str], Path],
    script_name: str,
    timeout_s: float,
    expected: str,
) -> None:
    script = fake_flowmesh(script_name)
    settings = load_settings(redis_url=redis_url, key_prefix=key_prefix)
    options = cluster.UpOptions(
        state_dir=tmp_path / "state", workers=1, port=free_port(), timeout_s=timeout_s
    )
    with pytest.raises(ServiceUnavailableError, match=expected):
        cluster.up(settings, options, say=lambda line: None)
    assert not (tmp_path / "state" / STATE_FILE).exists()
    assert _running(script) == []


def test_down_kills_what_does_not_stop_and_says_so(tmp_path: Path) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text(textwrap.dedent(FAKE_FLOWMESH))
    stubborn = subprocess.Popen(
        [sys.executable, str(script), "serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert stubborn.stdout is not None
        assert stubborn.stdout.readline() == "ignoring SIGTERM\n"
        state_dir = tmp_path / "state"
        state_dir.mkdir()
        started = cluster._processes.start_time(stubborn.pid)  # as `up` records it
        proc = cluster.Process("serve", "control plane", stubborn.pid, "serve.log", started)
        state = cluster.ClusterState(
            "http://127.0.0.1:1", "redis://x", "p", "file:///b", "t", None, 0.0, [proc]
        )
        (state_dir / STATE_FILE).write_text(state.to_json())
        down = flowmesh(
            "down", "--timeout", "1", "--state-dir", str(state_dir), env=dict(os.environ)
        )
        assert down.returncode == 0, down.stderr
        assert f"control plane serve (pid {stubborn.pid}) did not stop within 1 s: killed it" in (
            down.stderr
        )
        assert stubborn.wait(10) == -signal.SIGKILL
        assert not (state_dir / STATE_FILE).exists()
    finally:
        stubborn.kill()
        stubborn.wait(10)
        if stubborn.stdout is not None:
            stubborn.stdout.close()


async def test_the_local_tenant_token_is_kept_for_the_next_up(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    store = Store.open(redis_url, key_prefix)
    options = cluster.UpOptions(state_dir=tmp_path / "state")
    options.state_dir.mkdir()
    try:
        token = await cluster._up.tenant_token(store, options, redis_url)
        assert token is not None
        assert token.startswith("fm_")
        tokens = options.state_dir / cluster._state.TOKENS_FILE
        assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
        assert await cluster._up.tenant_token(store, options, redis_url) == token  # the next up
        tokens.unlink()
        assert await cluster._up.tenant_token(store, options, redis_url) is None  # exists, unknown
    finally:
        await store.purge()
        await store.aclose()


def _logs(state_dir: Path) -> str:
    logs = sorted((state_dir / "logs").glob("*.log"))
    return "".join(f"\n--- {log.name}:\n{log.read_text(errors='replace')}" for log in logs)


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("purged")
def test_up_demo_submits_the_demo_workload_from_three_teams_through_the_api(
    redis_url: str, key_prefix: str, tmp_path: Path, state_dir: Path
) -> None:
    """`up --demo` (no workers here: only the submission is checked) leaves each team's
    workflow on the cluster, readable with that team's token and nobody else's, and a
    second `up --demo` re-attaches instead of submitting again."""
    env = process_env(redis_url, key_prefix, f"file://{tmp_path / 'blobs'}")
    common = ["--workers", "0", "--state-dir", str(state_dir)]
    seen: list[dict[str, tuple[str, str]]] = []
    for _ in range(2):
        up = flowmesh("up", "--demo", "--port", str(free_port()), *common, env=env)
        assert up.returncode == 0, up.stderr + _logs(state_dir)
        admin = exports(up.stdout)
        assert f"watch it at {admin['FLOWMESH_SERVER_URL']}/ui" in up.stderr
        teams = {}
        for line in up.stderr.splitlines():
            if line.startswith("demo workload: tenant "):
                words = line.split()
                teams[words[3]] = (words[5], words[-1])
        assert sorted(teams) == ["team-research", "team-search", "team-support"], up.stderr
        url = admin["FLOWMESH_SERVER_URL"]
        for team, (workflow_id, token) in teams.items():
            with Client(url, token) as client:
                status = client.status(workflow_id, lineage=False)
                assert [n.node for n in status.nodes] == [
                    "prompts",
                    "generate",
                    "score",
                    "top",
                    "embed",
                ]
                for other, (other_id, _token) in teams.items():
                    if other != team:
                        with pytest.raises(NotFoundError):
                            client.status(other_id, lineage=False)
        with Client(url, admin["FLOWMESH_TOKEN"]) as client:  # the admin sees every team's
            assert all(client.status(w, lineage=False) for w, _t in teams.values())
        seen.append(teams)
        down = flowmesh("down", "--state-dir", str(state_dir), env=env)
        assert down.returncode == 0, down.stderr
    assert seen[0] == seen[1]  # same tokens (kept), same workflows (idempotency keys)
