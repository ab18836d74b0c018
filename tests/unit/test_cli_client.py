"""``flowmesh submit|status|lineage|stats`` through click's CliRunner against a fake API.

The CLI makes its client in one place (``cli._inspect.open_client``); tests replace it
with a client on an httpx.MockTransport, so tables, JSON output and exit statuses are
checked without a server. The unreachable-server and missing-token tests use the real
factory.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from flowmesh_core.cli import _inspect, _submit, main
from flowmesh_core.client import Client
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import LineageRecord
from flowmesh_core.models.api import (
    NodePlan,
    NodeState,
    NodeStatus,
    StatsReport,
    SubmitResult,
    TenantStats,
    WorkflowStatus,
)

WORKFLOW_FILE = """\
name: demo
nodes:
  embed:
    kind: embed
    model: all-MiniLM-L6-v2
    inputs: {texts: [a, b, c]}
  score:
    kind: score
    inputs: {pairs: {ref: embed}}
"""
OPERATOR_FILE = "kind: embed\nmodel: all-MiniLM-L6-v2\ninputs: {texts: [a]}\n"
DIGEST = digest_bytes(b"result")
OP_KEY = "ab12cd34ef56" + "0" * 52


def lineage(how: list[str], node: str = "embed") -> list[LineageRecord]:
    return [
        LineageRecord(
            tenant="team-a", workflow="wf-42", node=node, index=i, op_key=OP_KEY,
            status="done", satisfied_by=s, batch_id="batch-0001", worker="gpu-1",
            requested_at=1.0, started_at=2.0, finished_at=3.5, cost_usd=0.0125, energy_wh=0.5,
        )
        for i, s in enumerate(how)
    ]  # fmt: skip


def workflow_status(state: str, done: int = 3, with_lineage: bool = True) -> WorkflowStatus:
    failed = state == "failed"
    node = NodeStatus(
        node="embed",
        state=NodeState(state),
        op_key=OP_KEY,
        result_digest=DIGEST if state == "done" else None,
        error="CUDA out of memory" if failed else None,
        items_total=3,
        items_done=done,
        lineage=lineage(["executed", "cache_hit", "joined"]) if with_lineage else [],
    )
    return WorkflowStatus(
        workflow_id="wf-42",
        name="demo",
        state=NodeState(state),
        created_at=10.0,
        finished_at=12.5 if state in {"done", "failed"} else None,
        nodes=[node],
    )


PLAN = SubmitResult(
    workflow_id="wf-42",
    nodes=[
        NodePlan(node="embed", op_key=OP_KEY, state="pending", items=3, cache_hits=1, created=2),
        NodePlan(node="score", op_key=None, state="waiting", waits_for=["embed"]),
    ],
)
STATS = StatsReport(
    tenants=[TenantStats(tenant="team-a", requested=10, cache_hits=4, joins=2, created=4)],
    requested=10,
    executed=4,
    cache_hits=4,
    joins=2,
    batches=2,
    mean_batch_size=2.0,
    worker_seconds=12.5,
    cost_usd=0.25,
    energy_wh=3.5,
)


class FakeApi:
    """Answers the API's paths; ``states`` is what successive status polls return."""

    def __init__(self, states: list[str] | None = None) -> None:
        self.states = list(states or ["done"])
        self.requests: list[httpx.Request] = []
        self.interrupt_polls = False  # as if the user pressed Ctrl-C while it waits

    def _next_state(self) -> str:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST":
            return httpx.Response(201, json=PLAN.model_dump(mode="json"))
        if self.interrupt_polls:
            raise KeyboardInterrupt
        if path == "/v1/stats":
            return httpx.Response(200, json=STATS.model_dump(mode="json"))
        if path.endswith("/lineage"):
            records = lineage(["executed", "cache_hit", "joined"])
            return httpx.Response(200, json=[r.model_dump(mode="json") for r in records])
        if path.startswith("/v1/workflows/wf-42"):
            state = self._next_state()
            full = request.url.params.get("lineage") == "true"
            done = 3 if state == "done" else 1
            status = workflow_status(state, done, with_lineage=full)
            return httpx.Response(200, json=status.model_dump(mode="json"))
        body = {"error": {"type": "NotFoundError", "message": f"no workflow at {path}"}}
        return httpx.Response(404, json=body)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> FakeApi:
    """The fake API, wired in as the CLI's client; status polls made fast."""
    fake = FakeApi()

    def factory(cli: Any) -> Client:
        return Client("http://fm.test:8470", "tok", transport=httpx.MockTransport(fake))

    monkeypatch.setattr(_inspect, "open_client", factory)
    monkeypatch.setattr(_submit, "POLL_INTERVAL_S", 0.01)
    return fake


Invoke = Callable[..., Result]


@pytest.fixture
def invoke() -> Invoke:
    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


def cells(line: str) -> list[str]:
    """A table row's cells (none of them hold spaces here), borders dropped."""
    return line.replace("│", " ").split()


def write(tmp: Path, text: str, name: str = "flow.yaml") -> str:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- submit ---------------------------------------------------------------------------


def test_submit_sends_the_workflow_as_written_and_prints_the_plan(
    api: FakeApi, invoke: Invoke, clean_env: Path
) -> None:
    result = invoke("submit", write(clean_env, WORKFLOW_FILE))
    assert result.exit_code == 0, result.output
    (request,) = api.requests
    assert (request.method, request.url.path) == ("POST", "/v1/workflows")
    assert request.headers["content-type"] == "application/yaml"
    assert request.content.decode() == WORKFLOW_FILE
    out = result.stdout
    assert "workflow wf-42" in out
    for header in ("node", "op key", "state", "items", "cache hits", "joined", "created"):
        assert header in out
    embed_row = next(line for line in out.splitlines() if "embed" in line and "ab12" in line)
    assert cells(embed_row) == ["embed", "ab12cd34ef56", "pending", "3", "1", "0", "2"]
    assert "after embed" in out


def test_submit_of_a_single_operator_goes_to_the_operator_endpoint(
    api: FakeApi, invoke: Invoke, clean_env: Path
) -> None:
    result = invoke("submit", write(clean_env, OPERATOR_FILE))
    assert result.exit_code == 0, result.output
    assert [r.url.path for r in api.requests] == ["/v1/operators"]


def test_submit_json_prints_the_submit_result(
    api: FakeApi, invoke: Invoke, clean_env: Path
) -> None:
    result = invoke("submit", write(clean_env, WORKFLOW_FILE), "--json")
    assert result.exit_code == 0
    assert SubmitResult.model_validate_json(result.stdout) == PLAN


def test_submit_wait_follows_to_done_and_sums_up_without_bars_when_piped(
    api: FakeApi, invoke: Invoke, clean_env: Path
) -> None:
    api.states = ["pending", "running", "running", "done"]
    result = invoke("submit", write(clean_env, WORKFLOW_FILE), "--wait")
    assert result.exit_code == 0, result.output
    polls = [r for r in api.requests if r.method == "GET"]
    assert len(polls) >= 4  # it followed the run through every state
    out = result.stdout
    # No progress bar on a non-terminal, not even a final one; no cursor control either.
    assert not [line for line in out.splitlines() if "embed" in line and "━" in line]
    assert "1/3" not in out
    assert "\x1b" not in out
    rows = [cells(line) for line in out.splitlines()]
    # node, state, items, executed, cached, joined, result
    assert ["embed", "done", "3/3", "1", "1", "1", DIGEST[:19]] in rows
    assert ["total", "done", "3/3", "1", "1", "1"] in rows
    assert f"result embed: {DIGEST}" in out
    assert result.stderr == ""


def test_submit_wait_draws_a_bar_per_node_on_a_terminal(
    api: FakeApi, invoke: Invoke, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(_submit, "console", Console(file=screen, force_terminal=True, width=80))
    api.states = ["running", "running", "done"]
    result = invoke("submit", write(clean_env, WORKFLOW_FILE), "--wait")
    assert result.exit_code == 0, result.output
    drawn = screen.getvalue()
    bars = [line for line in drawn.splitlines() if "embed" in line and "━" in line]
    assert any("1/3" in line and "running" in line for line in bars)
    assert "3/3" in bars[-1]


def test_submit_wait_exits_1_with_the_error_when_the_workflow_fails(
    api: FakeApi, invoke: Invoke, clean_env: Path
) -> None:
    api.states = ["running", "failed"]
    result = invoke("submit", write(clean_env, WORKFLOW_FILE), "--wait")
    assert result.exit_code == 1
    assert "failed: workflow wf-42, node embed: CUDA out of memory" in result.stderr


def test_submit_wait_exits_3_when_the_timeout_passes(
    api: FakeApi, invoke: Invoke, clean_env: Path
) -> None:
    api.states = ["running"]
    result = invoke("submit", write(clean_env, WORKFLOW_FILE), "--wait", "--timeout", "0.2")
    assert result.exit_code == 3
    assert "still running after 0.2 s" in result.stderr
    assert "flowmesh status wf-42" in result.stderr


def test_submit_wait_json_prints_the_final_status(
    api: FakeApi, invoke: Invoke, clean_env: Path
) -> None:
    api.states = ["running", "done"]
    result = invoke("submit", write(clean_env, WORKFLOW_FILE), "--wait", "--json")
    assert result.exit_code == 0, result.output
    status = WorkflowStatus.model_validate_json(result.stdout)
    assert status.state == NodeState.DONE
    assert len(status.nodes[0].lineage) == 3
    assert any(r.url.path.endswith("/wait") for r in api.requests)


def test_ctrl_c_while_waiting_says_the_workflow_goes_on(
    api: FakeApi, invoke: Invoke, clean_env: Path
) -> None:
    api.interrupt_polls = True
    result = invoke("submit", write(clean_env, WORKFLOW_FILE), "--wait")
    assert result.exit_code == 130
    assert "wf-42 goes on running" in result.stderr
    assert "Traceback" not in result.output


def test_submit_timeout_without_wait_is_a_usage_error(
    api: FakeApi, invoke: Invoke, clean_env: Path
) -> None:
    result = invoke("submit", write(clean_env, WORKFLOW_FILE), "--timeout", "5")
    assert result.exit_code == 2
    assert "--timeout applies only with --wait" in result.stderr
    assert api.requests == []


def test_submit_of_broken_yaml_names_the_line_and_sends_nothing(
    api: FakeApi, invoke: Invoke, clean_env: Path
) -> None:
    result = invoke("submit", write(clean_env, "nodes:\n  a: [unclosed\n"))
    assert result.exit_code == 2
    assert "line 3" in result.stderr
    assert api.requests == []


# -- status, lineage, stats -----------------------------------------------------------


def test_status_prints_the_table_and_json(api: FakeApi, invoke: Invoke) -> None:
    table = invoke("status", "wf-42")
    assert table.exit_code == 0, table.output
    assert "workflow wf-42  done  (demo)  in 2.5 s" in table.stdout
    rows = [cells(line) for line in table.stdout.splitlines()]
    assert ["embed", "done", "3/3", "1", "1", "1", DIGEST[:19]] in rows
    as_json = invoke("status", "wf-42", "--json")
    assert WorkflowStatus.model_validate_json(as_json.stdout) == workflow_status("done")


def test_cancel_sends_delete_and_prints_the_status(api: FakeApi, invoke: Invoke) -> None:
    api.states = ["cancelled"]
    result = invoke("cancel", "wf-42")
    assert result.exit_code == 0, result.output
    assert "workflow wf-42  cancelled" in result.stdout
    assert [(r.method, r.url.path) for r in api.requests] == [("DELETE", "/v1/workflows/wf-42")]
    assert result.stderr == ""
    api.states = ["done"]
    finished = invoke("cancel", "wf-42", "--json")
    assert finished.exit_code == 0, finished.output
    assert WorkflowStatus.model_validate_json(finished.stdout).state == "done"
    missing = invoke("cancel", "wf-nope")
    assert missing.exit_code == 2
    assert "no workflow at /v1/workflows/wf-nope" in missing.stderr


def test_lineage_prints_a_row_per_item_and_json(api: FakeApi, invoke: Invoke) -> None:
    table = invoke("lineage", "wf-42")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert cells(lines[0]) == [
        "node", "#", "op", "key", "status", "satisfied", "by", "batch", "worker", "secs", "$",
    ]  # fmt: skip
    items = [cells(line) for line in lines if line.startswith("embed")]
    assert [row[4] for row in items] == ["executed", "cache_hit", "joined"]
    assert items[0] == [
        "embed", "0", "ab12cd34ef56", "done", "executed", "batch-00", "gpu-1", "1.50", "0.0125",
    ]  # fmt: skip
    assert "3 items: 1 executed, 1 cache hits, 1 joined; $0.0375, 1.50 Wh" in table.stdout
    as_json = invoke("lineage", "wf-42", "--json")
    assert [r["satisfied_by"] for r in json.loads(as_json.stdout)] == [
        "executed",
        "cache_hit",
        "joined",
    ]


def test_stats_prints_totals_and_tenant_rows_and_json(api: FakeApi, invoke: Invoke) -> None:
    table = invoke("stats")
    assert table.exit_code == 0, table.output
    out = table.stdout
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "executed items 4" in lines
    assert "served without a run 6 (60% of requested)" in lines
    assert "batches 2 (mean size 2.0)" in lines
    assert "$0.2500" in out
    assert "3.50 Wh" in out
    tenant = next(line for line in out.splitlines() if "team-a" in line)
    assert cells(tenant) == [
        "team-a", "10", "4", "4", "2", "0.0", "0.0000", "0.00",
    ]  # fmt: skip
    assert StatsReport.model_validate_json(invoke("stats", "--json").stdout) == STATS


def test_a_server_error_is_one_line_with_exit_2(api: FakeApi, invoke: Invoke) -> None:
    result = invoke("status", "nope")
    assert result.exit_code == 2
    assert result.stderr == "error: no workflow at /v1/workflows/nope\n"


# -- the real client factory ----------------------------------------------------------


def test_an_unreachable_server_is_one_line_naming_the_url(invoke: Invoke, clean_env: Path) -> None:
    result = invoke("--server-url", "http://127.0.0.1:9", "--token", "t", "status", "wf-42")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: the FlowMesh server at http://127.0.0.1:9 ")
    assert "flowmesh serve" in lines[0]
    assert "Traceback" not in result.output


def test_a_missing_token_says_how_to_set_one(invoke: Invoke, clean_env: Path) -> None:
    result = invoke("--server-url", "http://127.0.0.1:9", "stats")
    assert result.exit_code == 2
    assert "FLOWMESH_TOKEN" in result.stderr
    assert "--token" in result.stderr


def test_the_token_option_reaches_the_client(
    invoke: Invoke, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str | None]] = []

    class Probe(Client):
        def __init__(self, url: str | None = None, token: str | None = None, **kw: Any) -> None:
            seen.append((str(url), token))
            super().__init__(url, token, transport=httpx.MockTransport(FakeApi()))

    monkeypatch.setattr(_inspect, "Client", Probe)
    result = invoke("--server-url", "http://fm.test:1", "--token", "s3cret", "stats")
    assert result.exit_code == 0, result.output
    assert seen == [("http://fm.test:1", "s3cret")]
