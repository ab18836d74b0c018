"""The Airflow provider inside real Airflow 3, against a live FlowMesh (real processes, Redis).

One subprocess (``airflow_dags/run.py``) initialises a fresh sqlite metadata DB under a
temporary AIRFLOW_HOME and runs the DAGs of ``airflow_dags/dags/`` with ``dag.test()``,
which runs a deferred task's trigger in line and then resumes the task, as the triggerer
would. Airflow is never imported into the test process: it reads its configuration at
import, and other test modules must not inherit ours. Each test asserts on the record the
runner wrote (task states and tries, XCom values from the DB, the trigger events fired and
the resumes they caused) and on FlowMesh's side through the client SDK.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowmesh_core.client import Client
from tests.adapters.conftest import Live
from tests.integration.procs import ROOT, free_port

HERE = Path(__file__).parent / "airflow_dags"
DAGS = ["fm_pipeline", "fm_blocking", "fm_failure", "fm_unreachable", "fm_retry", "fm_lineage"]
# The DAGs of docs/airflow.md's runnable blocks and the example (airflow_dags/dags/fm_docs.py).
DOC_DAGS = ["docs_airflow", "embed_docs", "flowmesh_post_training"]
RUN_TIMEOUT_S = 360  # a busy 2-core machine starts Airflow slowly
HOOK_CASES: dict[str, dict[str, Any]] = {
    "url": {"conn_type": "flowmesh", "host": "http://fm.internal:8470/", "password": "tok"},
    "uri": {"uri": "flowmesh://:tok@fm.internal:8470"},
    "parts": {
        "conn_type": "flowmesh",
        "host": "fm.internal",
        "schema": "https",
        "port": 8443,
        "extra": json.dumps({"token": "from-extra", "timeout": "5"}),
    },
    "password_wins": {
        "conn_type": "flowmesh",
        "host": "http://fm.internal:8470",
        "password": "tok",
        "extra": json.dumps({"token": "from-extra"}),
    },
    "no_host": {"conn_type": "flowmesh", "password": "tok"},
    "no_token": {"conn_type": "flowmesh", "host": "http://fm.internal:8470"},
    "not_http": {"conn_type": "flowmesh", "host": "ftp://fm.internal", "password": "tok"},
    "bad_timeout": {
        "conn_type": "flowmesh",
        "host": "http://fm.internal",
        "password": "tok",
        "extra": json.dumps({"timeout": 0}),
    },
}

pytestmark = pytest.mark.timeout(RUN_TIMEOUT_S + 30)


class Runs:
    """What the runner recorded, with the tenant token and paths the DAGs used."""

    def __init__(self, report: dict[str, Any], token: str, out: Path, exec_log: Path, port: int):
        self.report = report
        self.token = token
        self.out = out
        self.exec_log = exec_log
        self.nowhere_port = port

    def dag(self, dag_id: str) -> dict[str, Any]:
        record: dict[str, Any] = self.report["dags"][dag_id]
        return record

    def task(self, dag_id: str, task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = self.dag(dag_id)["tasks"][task_id]
        return task

    def triggers(self, dag_id: str) -> list[dict[str, Any]]:
        return [c for c in self.dag(dag_id)["calls"] if c["what"] == "trigger"]

    def resumes(self, dag_id: str) -> list[dict[str, Any]]:
        return [c for c in self.dag(dag_id)["calls"] if c["what"] == "resume"]


def _env(
    tmp: Path, url: str, token: str, nowhere_port: int, conf: dict[str, Any]
) -> dict[str, str]:
    """The runner's environment: no FLOWMESH_* or AIRFLOW* leaks in from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWMESH_", "AIRFLOW"))}
    env.update(
        PYTHONPATH=str(ROOT),
        AIRFLOW_HOME=str(tmp / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(HERE / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # FlowMeshOperator's deferrable default follows this (Airflow's own default: False).
        AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="True",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp / 'airflow' / 'airflow.db'}",
        AIRFLOW_CONN_FLOWMESH_DEFAULT=json.dumps(
            {"conn_type": "flowmesh", "host": url, "password": token}
        ),
        AIRFLOW_CONN_FLOWMESH_NOWHERE=json.dumps(
            {"conn_type": "flowmesh", "host": f"http://127.0.0.1:{nowhere_port}", "password": "x"}
        ),
        # OpenLineage's own file transport: each event the provider emits, one JSON a line.
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(
            {
                "type": "file",
                "log_file_path": str(tmp / "out" / "openlineage.jsonl"),
                "append": True,
            }
        ),
        AIRFLOW__OPENLINEAGE__NAMESPACE="fm-tests",
        FM_AIRFLOW_OUT=str(tmp / "out"),
        FM_EXEC_LOG=str(tmp / "exec.log"),
        FM_HOOK_CASES=json.dumps(HOOK_CASES),
        FM_EXAMPLE_DAGS=str(ROOT / "examples" / "airflow"),
        FM_DOC_EXAMPLES="1",
        FM_DAG_CONF=json.dumps(conf),
    )
    return env


@pytest.fixture(scope="module")
def runs(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    tmp = tmp_path_factory.mktemp("airflow")
    (tmp / "out").mkdir()
    (tmp / "airflow").mkdir()
    _name, token = live.tenant("airflow")
    port = free_port()
    # docs/airflow.md's sensor waits for the workflow its run's conf names, node "score".
    with Client(live.url, token) as client:
        elsewhere = client.submit_workflow(
            {
                "nodes": {
                    "score": {
                        "kind": "data.template",
                        "params": {"template": "{text}"},
                        "inputs": {"records": [f"scored elsewhere {uuid.uuid4().hex[:8]}"]},
                    }
                }
            }
        )
    conf = {"docs_airflow": {"workflow_id": elsewhere.workflow_id}}
    report_path = tmp / "report.json"
    log = tmp / "runner.log"
    with log.open("wb") as out:
        proc = subprocess.run(
            [sys.executable, str(HERE / "run.py"), str(report_path), *DAGS, *DOC_DAGS],
            env=_env(tmp, live.url, token, port, conf),
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    tail = log.read_text(errors="replace")[-6000:]
    assert proc.returncode == 0, f"the Airflow runner failed:\n{tail}\n{live.logs()}"
    report = json.loads(report_path.read_text())
    assert report["import_errors"] == {}, tail
    return Runs(report, token, tmp / "out", tmp / "exec.log", port)


def test_the_provider_is_found_through_its_entry_point(runs: Runs) -> None:
    provider = runs.report["provider"]
    assert "airflow-provider-flowmesh" in provider["packages"]
    assert provider["hook"] == "flowmesh_airflow.hooks.FlowMeshHook"
    assert "flowmesh" in provider["decorators"]
    assert provider["field_behaviour"]["relabeling"]["host"] == "Control plane URL"
    assert provider["exports"] == {
        "FlowMeshHook": "flowmesh_airflow.hooks.FlowMeshHook",
        "FlowMeshOperator": "flowmesh_airflow.operators.FlowMeshOperator",
        "FlowMeshTrigger": "flowmesh_airflow.triggers.FlowMeshTrigger",
        "FlowMeshWorkflowLink": "flowmesh_airflow.links.FlowMeshWorkflowLink",
        "FlowMeshWorkflowSensor": "flowmesh_airflow.sensors.FlowMeshWorkflowSensor",
        "flowmesh_task": "flowmesh_airflow.decorators.flowmesh_task",
    }


def test_the_hook_reads_url_and_token_from_the_connection(runs: Runs) -> None:
    hook = runs.report["hook"]
    assert hook["url"] == {"url": "http://fm.internal:8470", "token": "tok", "timeout": 30.0}
    assert hook["uri"] == {"url": "http://fm.internal:8470", "token": "tok", "timeout": 30.0}
    assert hook["parts"] == {
        "url": "https://fm.internal:8443",
        "token": "from-extra",
        "timeout": 5.0,
    }
    assert hook["password_wins"]["token"] == "tok"
    assert "'no_host' has no host" in hook["no_host"]["error"]
    assert "'no_token' has no FlowMesh token" in hook["no_token"]["error"]
    assert "not an http(s) URL" in hook["not_http"]["error"]
    assert "'timeout' must be positive" in hook["bad_timeout"]["error"]


def test_two_tasks_defer_resume_and_pass_references_downstream(live: Live, runs: Runs) -> None:
    dag = runs.dag("fm_pipeline")
    assert dag["state"] == "success", dag
    assert {t["state"] for t in dag["tasks"].values()} == {"success"}, dag["tasks"]
    first, second = runs.task("fm_pipeline", "first"), runs.task("fm_pipeline", "second")

    # Deferral really happened: the trigger fired for both slow tasks, only ids went into
    # it, and each task resumed in execute_complete with that event.
    fired = {c["trigger"][1]["workflow_id"]: c for c in runs.triggers("fm_pipeline")}
    for ref in (first["xcom"], second["xcom"]):
        classpath, kwargs = fired[ref["workflow_id"]]["trigger"]
        assert classpath == "flowmesh_airflow.triggers.FlowMeshTrigger"
        assert set(kwargs) == {"workflow_id", "node", "deadline", "timeout_s", "flowmesh_conn_id"}
        assert fired[ref["workflow_id"]]["event"]["status"] == "done"
    resumed = {c["task_id"] for c in runs.resumes("fm_pipeline")}
    assert {"first", "second"} <= resumed

    # The XCom value is a small reference, never the payload.
    ref = first["xcom"]
    assert ref["node"] == "op"
    assert ref["satisfied_by"] == "executed"
    assert ref["items"] == {"total": 1, "executed": 1, "cache_hit": 0, "joined": 0}
    assert ref["op_key"]
    assert ref["result_digest"].startswith("sha256:")
    assert "nodes" not in ref
    assert "fm_pipeline/first" not in json.dumps(ref)

    # Downstream tasks got exactly what XCom holds, and data flowed by digest.
    received = json.loads((runs.out / "received.json").read_text())
    assert received["first"] == first["xcom"]
    assert received["second"] == second["xcom"]
    with Client(live.url, token=runs.token) as client:
        assert client.result_json(first["xcom"]["result_digest"]) == "fm_pipeline/first"
        assert client.result_json(second["xcom"]["result_digest"]) == "fm_pipeline/first"
        assert client.result_json(received["third"]["result_digest"]) == "fm_pipeline/first"
        assert client.result_json(received["flow"]["result_digest"]) == 5
    # FlowMeshHook.read, inside a task: the XCom reference or a digest, read as a value.
    assert received["values"] == {"first": "fm_pipeline/first", "flow": 5}


def test_a_cached_result_finishes_at_submission_without_deferring(runs: Runs) -> None:
    first, cached = runs.task("fm_pipeline", "first"), runs.task("fm_pipeline", "cached")
    assert cached["state"] == "success"
    assert cached["xcom"]["satisfied_by"] == "cache_hit"
    assert cached["xcom"]["result_digest"] == first["xcom"]["result_digest"]
    assert cached["xcom"]["workflow_id"] not in {
        c["trigger"][1]["workflow_id"] for c in runs.triggers("fm_pipeline")
    }


def test_a_workflow_references_its_last_node_and_lists_every_node(runs: Runs) -> None:
    ref = runs.task("fm_pipeline", "flow")["xcom"]
    assert ref["node"] == "again"
    assert set(ref["nodes"]) == {"sum", "again"}
    assert ref["nodes"]["again"]["result_digest"] == ref["result_digest"]


def test_the_decorator_submits_what_its_function_returns(runs: Runs) -> None:
    third = runs.task("fm_pipeline", "third")
    assert third["state"] == "success"
    assert third["xcom"]["node"] == "op"
    assert third["xcom"]["result_digest"]


def test_non_deferrable_mode_waits_in_the_worker(live: Live, runs: Runs) -> None:
    task = runs.task("fm_blocking", "blocking")
    assert task["state"] == "success"
    assert runs.triggers("fm_blocking") == []
    assert runs.resumes("fm_blocking") == []
    with Client(live.url, token=runs.token) as client:
        assert client.result_json(task["xcom"]["result_digest"]) == "blocking"


def test_a_flowmesh_failure_fails_the_task_with_flowmeshs_message(runs: Runs) -> None:
    task = runs.task("fm_failure", "fails")
    assert task["state"] == "failed"
    first = json.loads((runs.out / "failure-fm_failure-fails-1.json").read_text())["error"]
    assert "refusing 'bad'" in first
    assert "node 'op'" in first


def test_a_retry_after_a_flowmesh_failure_submits_afresh(live: Live, runs: Runs) -> None:
    task = runs.task("fm_failure", "fails")
    assert task["try_number"] == 2
    errors = [
        json.loads((runs.out / f"failure-fm_failure-fails-{n}.json").read_text())["error"]
        for n in (1, 2)
    ]
    workflows = [error.split()[2] for error in errors]  # "FlowMesh workflow <id> failed: ..."
    assert workflows[0] != workflows[1], errors
    with Client(live.url, token=runs.token) as client:  # the retry's work ran anew
        assert [r.satisfied_by for r in client.lineage(workflows[1])] == ["executed"]


def test_rejected_work_says_what_to_fix_and_blames_no_connection(runs: Runs) -> None:
    assert runs.task("fm_failure", "rejected")["state"] == "failed"
    error = json.loads((runs.out / "failure-fm_failure-rejected-1.json").read_text())["error"]
    assert error.startswith("FlowMesh refused the request: "), error
    assert "template" in error
    assert "Airflow connection" not in error


def test_an_unreachable_control_plane_names_the_url_it_tried(runs: Runs) -> None:
    task = runs.task("fm_unreachable", "unreachable")
    assert task["state"] == "failed"
    failure = json.loads((runs.out / "failure-fm_unreachable-unreachable-1.json").read_text())
    assert f"http://127.0.0.1:{runs.nowhere_port}" in failure["error"], failure
    # The URL came from the connection, and the message says so (not FLOWMESH_SERVER_URL).
    assert "Check the host of Airflow connection 'flowmesh_nowhere'" in failure["error"]
    assert "FLOWMESH_SERVER_URL" not in failure["error"]
    assert "flowmesh_nowhere" in failure["error"]


def test_a_retry_reattaches_to_the_same_submission(runs: Runs) -> None:
    task = runs.task("fm_retry", "retried")
    assert task["state"] == "success", task
    assert task["try_number"] == 2
    assert len(task["earlier_tries"]) == 1
    events = [c["event"] for c in runs.triggers("fm_retry")]
    # The second try re-attaches: it defers again, or, on a machine slow enough that the
    # work finished meanwhile, it finds it done at submission.
    assert [e["status"] for e in events] in (["timeout", "done"], ["timeout"]), events
    assert "did not finish within" in events[0]["message"]
    assert {e["workflow_id"] for e in events} == {task["xcom"]["workflow_id"]}
    executions = [json.loads(line)[0] for line in runs.exec_log.read_text().splitlines()]
    assert executions.count("retried-item") == 1


def test_the_extra_link_opens_the_workflows_dashboard_page(live: Live, runs: Runs) -> None:
    for dag_id, task_id in [("fm_pipeline", "first"), ("fm_lineage", "watched")]:
        task = runs.task(dag_id, task_id)
        workflow_id = task["xcom"]["workflow_id"]
        assert task["link"] == f"{live.url}/ui/#workflow/{workflow_id}", task
        page = httpx.get(task["link"], timeout=10)
        assert page.status_code == 200
        assert "FlowMesh" in page.text  # the dashboard, which routes #workflow/<id>
        with Client(live.url, token=runs.token) as client:  # an id the tenant can open
            assert client.status(workflow_id).state == "done"


def _openlineage_events(runs: Runs) -> list[dict[str, Any]]:
    path = runs.out / "openlineage.jsonl"
    assert path.exists(), "the OpenLineage provider emitted nothing"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_openlineage_events_carry_digests_and_how_flowmesh_satisfied_the_work(
    live: Live, runs: Runs
) -> None:
    source = runs.task("fm_lineage", "source")["xcom"]
    derived = runs.task("fm_lineage", "derived")["xcom"]
    complete = [
        e
        for e in _openlineage_events(runs)
        if e["eventType"] == "COMPLETE" and e["job"]["name"] == "fm_lineage.derived"
    ]
    assert len(complete) == 1, [e["job"]["name"] for e in _openlineage_events(runs)]
    event = complete[0]
    namespace = "flowmesh://" + live.url.split("://", 1)[1]
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [
        (namespace, source["result_digest"])
    ]
    assert [(d["namespace"], d["name"]) for d in event["outputs"]] == [
        (namespace, derived["result_digest"])
    ]
    facet = event["run"]["facets"]["flowmesh"]
    assert facet["workflowId"] == derived["workflow_id"]
    assert facet["satisfiedBy"] == "executed"
    assert facet["items"] == {"total": 1, "executed": 1, "cache_hit": 0, "joined": 0}
    assert facet["url"] == f"{live.url}/ui/#workflow/{derived['workflow_id']}"


def test_asset_outlets_carry_the_result(live: Live, runs: Runs) -> None:
    derived = runs.task("fm_lineage", "derived")["xcom"]
    events = {e["name"]: e for e in runs.dag("fm_lineage")["assets"]}
    named = events["fm_lineage_result"]
    assert named["task"] == "derived"
    assert named["extra"]["result_digest"] == derived["result_digest"]
    assert named["extra"]["satisfied_by"] == "executed"
    uri = "flowmesh://" + live.url.split("://", 1)[1] + "/" + derived["result_digest"]
    assert uri in {e["uri"] for e in events.values()}, events


def test_the_sensor_waits_for_a_workflow_submitted_elsewhere(live: Live, runs: Runs) -> None:
    workflow_id = runs.task("fm_lineage", "submit_elsewhere")["xcom"]
    for task_id in ("watched", "poked"):
        task = runs.task("fm_lineage", task_id)
        assert task["state"] == "success", task
        assert task["xcom"]["workflow_id"] == workflow_id
    fired = [c["trigger"][1]["workflow_id"] for c in runs.triggers("fm_lineage")]
    assert workflow_id in fired  # "watched" deferred; "poked" did not
    received = json.loads((runs.out / "sensed.json").read_text())
    assert received == "submitted elsewhere"


def test_the_example_pipeline_parses_as_documented(runs: Runs) -> None:
    example = runs.report["example"]
    assert example["import_errors"] == {}
    assert example["dags"]["flowmesh_post_training"] == {
        "generate": [],
        "score": ["generate"],
        "filter": ["score"],
        "embed": ["filter"],
        "report": ["embed", "filter", "generate"],
    }


def test_the_documented_dags_and_the_example_run(live: Live, runs: Runs) -> None:
    """docs/airflow.md's runnable blocks (tests/adapters/doc_examples.py) and the example
    pipeline ran in Airflow against the live FlowMesh: every task succeeded, and what
    the pages say the XCom and the report hold is what they hold."""
    for dag_id in DOC_DAGS:
        dag = runs.dag(dag_id)
        assert dag["state"] == "success", (dag_id, dag["tasks"])
        assert {t["state"] for t in dag["tasks"].values()} == {"success"}, dag["tasks"]
    docs = runs.dag("docs_airflow")["tasks"]
    assert docs["count"]["xcom"] == docs["score"]["xcom"]["items"]["total"] > 0
    assert set(docs["generate_and_embed"]["xcom"]["nodes"]) == {"generate", "embed"}
    assert docs["wait_for_scores"]["xcom"]["node"] == "score"
    embed = runs.task("embed_docs", "embed")["xcom"]
    assert embed["items"]["total"] == 2
    report = runs.task("flowmesh_post_training", "report")["xcom"]
    assert re.fullmatch(
        r"kept \d+ of 8 completions; \d+ embeddings at sha256:[0-9a-f]{64} "
        r"\(generate: \w+, embed: \w+\)",
        report,
    ), report


def test_the_adapter_imports_only_the_client_side_of_flowmesh() -> None:
    allowed = ("flowmesh_core.client", "flowmesh_core.models", "flowmesh_core.errors")
    package = ROOT / "integrations" / "airflow" / "src" / "flowmesh_airflow"
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        typing_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
            for node in ast.walk(block)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in typing_only:
                module = node.module or ""
                if module.startswith("flowmesh_core"):
                    assert module.startswith(allowed), f"{path.name} imports {module}"
