"""The Dagster adapter inside real Dagster: assets and ops on a live FlowMesh.

Assets and ops use ``FlowMeshResource`` and ``FlowMeshIOManager`` and run with
``materialize`` / ``execute_in_process`` on an ephemeral Dagster instance, against the
live control plane and worker (``live``, real Redis). What is checked: the value and its
metadata (op key, dedup status, lineage, cost), that the data version is the content
digest and Dagster's staleness follows it, that a step retry re-attaches instead of
submitting twice, that a FlowMesh failure fails the run with FlowMesh's message, that an
unreachable control plane is named by its URL, and that loads are verified.
"""

# No `from __future__ import annotations`: Dagster reads the annotations of the assets
# and ops defined inside the tests (context, resources, CASRef inputs) as real types.

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

import flowmesh_dagster
from flowmesh_core.blobs import open_blob_store
from flowmesh_core.client import Client, python_operator
from flowmesh_core.hashing import canonical_json, digest_value
from flowmesh_dagster import CASRef, FlowMeshIOManager, FlowMeshResource
from tests.adapters.conftest import Live
from tests.integration.procs import free_port
from tests.worker import ops

# No filter for Dagster's BetaWarning on data_version: the adapter silences exactly that
# notice, and pytest's filterwarnings=error fails any test where it leaks.
pytestmark = [pytest.mark.redis]

DATA_VERSION = "dagster/data_version"


@pytest.fixture(scope="module")
def tenant(live: Live) -> str:
    """One tenant's token for this module (its tests use fresh values, not fresh tenants)."""
    return live.tenant("dagster")[1]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def resources(live: Live, token: str) -> dict[str, Any]:
    return {
        "flowmesh": FlowMeshResource(server_url=live.url, token=token),
        "io_manager": FlowMeshIOManager(server_url=live.url, token=token),
    }


def fresh(label: str) -> list[str]:
    """Values no earlier run has computed, so the first run executes for real."""
    return [f"{label}-{uuid.uuid4().hex[:8]}", "beta", "gamma"]


def metadata_of(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    """The plain values of ``node``'s latest materialization metadata, and its tags."""
    mat = result.asset_materializations_for_node(node)[-1]
    values = {key: value.value for key, value in mat.metadata.items()}
    return {**values, "tags": dict(mat.tags or {})}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the run did not fail a step"
    data = failures[0].step_failure_data
    parts = [data.error.to_string() if data.error else ""]
    if data.user_failure_data is not None:
        parts.append(data.user_failure_data.description or "")
    return "\n".join(parts)


def test_the_package_exports_a_short_explicit_api() -> None:
    assert flowmesh_dagster.__all__ == sorted(flowmesh_dagster.__all__)
    assert all(hasattr(flowmesh_dagster, name) for name in flowmesh_dagster.__all__)
    assert set(flowmesh_dagster.__all__) == {
        "CASRef",
        "FlowMeshIOManager",
        "FlowMeshResource",
        "FlowMeshResult",
        "FlowMeshSubmission",
        "code_version",
        "digest_check",
    }


def test_assets_run_on_flowmesh_with_lineage_metadata_and_content_versions(
    live: Live, tenant: str, instance: dg.DagsterInstance
) -> None:
    words = fresh("assets")

    @dg.asset
    def words_asset(
        context: dg.AssetExecutionContext, flowmesh: FlowMeshResource
    ) -> dg.Output[list[str]]:
        return flowmesh.run(context, python_operator(ops.echo, {"x": words})).output()

    @dg.asset
    def echoed(
        context: dg.AssetExecutionContext, flowmesh: FlowMeshResource, words_asset: CASRef
    ) -> dg.Output[list[str]]:
        # The upstream value reaches FlowMesh by digest: no bytes go through Dagster.
        op = python_operator(ops.echo, {"x": words_asset.as_input()})
        return flowmesh.run(context, op).output()

    @dg.asset
    def joined(words_asset: list[str]) -> str:
        return " ".join(words_asset)

    @dg.asset(deps=[words_asset])
    def kept(context: dg.AssetExecutionContext, flowmesh: FlowMeshResource) -> dg.MaterializeResult:
        # The value stays in FlowMesh: no IO manager runs, the version is still its digest.
        return flowmesh.run(context, python_operator(ops.echo, {"x": words})).materialize_result()

    result = dg.materialize(
        [words_asset, echoed, joined, kept], instance=instance, resources=resources(live, tenant)
    )
    assert result.success, live.logs()

    meta = metadata_of(result, "words_asset")
    digest = digest_value(words)
    assert meta["flowmesh/digest"] == digest
    assert meta["tags"][DATA_VERSION] == digest
    assert (meta["flowmesh/executed"], meta["flowmesh/cache_hit"], meta["flowmesh/joined"]) == (
        1,
        0,
        0,
    )
    assert meta["flowmesh/items"] == 1
    assert meta["flowmesh/batches"] == 1
    assert meta["flowmesh/workers"] == "adapter-worker"
    assert meta["flowmesh/cost_usd"] >= 0
    assert meta["flowmesh/energy_wh"] >= 0
    assert "| op |" in meta["flowmesh/lineage"]
    with Client(live.url, token=tenant) as client:
        status = client.status(meta["flowmesh/workflow_id"])
    assert meta["flowmesh/op_key"] == status.nodes[0].op_key
    assert meta["flowmesh/result_digest"] == status.nodes[0].result_digest == digest

    # The same content under another asset: the same digest, hence the same data version.
    assert metadata_of(result, "echoed")["tags"][DATA_VERSION] == digest
    # A plain Dagster asset stored by the IO manager: its value's digest, read back verified.
    joined_meta = metadata_of(result, "joined")
    assert joined_meta["tags"][DATA_VERSION] == digest_value(" ".join(words))
    blobs = open_blob_store(f"file://{live.blob_dir}")
    assert blobs.get_bytes(joined_meta["flowmesh/digest"]) == canonical_json(" ".join(words))
    assert result.output_for_node("joined") == " ".join(words)

    kept_meta = metadata_of(result, "kept")
    assert kept_meta["tags"][DATA_VERSION] == digest
    assert "flowmesh/digest" not in kept_meta  # not stored by the IO manager
    assert (kept_meta["flowmesh/executed"], kept_meta["flowmesh/cache_hit"]) == (0, 1)


def test_staleness_follows_content(live: Live, tenant: str, instance: dg.DagsterInstance) -> None:
    class Words(dg.Config):
        words: list[str]

    @dg.asset
    def texts(
        context: dg.AssetExecutionContext, config: Words, flowmesh: FlowMeshResource
    ) -> dg.Output[list[str]]:
        return flowmesh.run(context, python_operator(ops.echo, {"x": config.words})).output()

    @dg.asset
    def count(texts: list[str]) -> int:
        return len(texts)

    def materialize(words: list[str]) -> dict[str, Any]:
        """Materialize ``texts`` alone, from ``words``; its metadata."""
        result = dg.materialize(
            [texts, count],
            instance=instance,
            resources=resources(live, tenant),
            run_config={"ops": {"texts": {"config": {"words": words}}}},
            selection=[texts],
        )
        assert result.success, live.logs()
        return metadata_of(result, "texts")

    def catch_up() -> None:
        result = dg.materialize(
            [texts, count], instance=instance, selection=[count], resources=resources(live, tenant)
        )
        assert result.success

    def count_status() -> StaleStatus:
        return get_stale_status_resolver(instance, [texts, count]).get_status(count.key)

    words = fresh("versions")
    first = materialize(words)
    assert first["tags"][DATA_VERSION] == digest_value(words)
    catch_up()
    assert count_status() == StaleStatus.FRESH

    # Re-materialized upstream, same content: a new run, a cache hit, the same version,
    # so what was computed from it is still fresh.
    again = materialize(list(words))
    assert again["flowmesh/workflow_id"] != first["flowmesh/workflow_id"]
    assert (again["flowmesh/executed"], again["flowmesh/cache_hit"]) == (0, 1)
    assert again["tags"][DATA_VERSION] == first["tags"][DATA_VERSION]
    assert count_status() == StaleStatus.FRESH

    # New content: a new version, and the downstream asset is stale until it catches up.
    changed = materialize([*words, "delta"])
    assert changed["tags"][DATA_VERSION] == digest_value([*words, "delta"])
    assert count_status() == StaleStatus.STALE
    catch_up()
    assert count_status() == StaleStatus.FRESH


def test_an_empty_split_result_is_an_empty_list(
    live: Live, tenant: str, instance: dg.DagsterInstance
) -> None:
    @dg.asset
    def nothing(
        context: dg.AssetExecutionContext, flowmesh: FlowMeshResource
    ) -> dg.Output[list[str]]:
        template = {
            "kind": "data.template",
            "params": {"template": "{text}"},
            "inputs": {"records": []},
        }
        return flowmesh.run(context, template).output()

    result = dg.materialize([nothing], instance=instance, resources=resources(live, tenant))
    assert result.success, live.logs()
    assert result.output_for_node("nothing") == []
    meta = metadata_of(result, "nothing")
    assert meta["tags"][DATA_VERSION] == digest_value([])
    assert (meta["flowmesh/items"], meta["flowmesh/cost_usd"]) == (0, 0.0)


def test_get_client_reads_a_result_as_the_asset_gets_it(
    live: Live, tenant: str, instance: dg.DagsterInstance
) -> None:
    words = fresh("client")

    @dg.asset
    def shouted(context: dg.AssetExecutionContext, flowmesh: FlowMeshResource) -> list[Any]:
        template = {
            "kind": "data.template",
            "params": {"template": "{text}!"},
            "inputs": {"records": [{"text": w} for w in words]},
        }
        result = flowmesh.run(context, template)
        with flowmesh.get_client() as client:
            raw = client.result_json(result.result_digest)
            value = client.result_value(result.result_digest)
        assert set(raw) == {"manifest"}
        return [value, result.output().value]

    run = dg.materialize([shouted], instance=instance, resources=resources(live, tenant))
    assert run.success, live.logs()
    via_client, via_output = run.output_for_node("shouted")
    assert via_client == via_output == [f"{w}!" for w in words]


def test_an_op_submits_a_workflow_and_waits_for_it(
    live: Live, tenant: str, instance: dg.DagsterInstance
) -> None:
    first = python_operator(ops.echo, {"x": fresh("op")})
    workflow = {
        "nodes": {
            "first": first.model_dump(mode="json"),
            "second": {**first.model_dump(mode="json"), "inputs": {"x": {"ref": "first"}}},
        }
    }

    @dg.op
    def echo_twice(
        context: dg.OpExecutionContext, flowmesh: FlowMeshResource
    ) -> dg.Output[list[str]]:
        submission = flowmesh.submit(context, workflow)
        assert submission.node == "second"
        return flowmesh.wait(context, submission).output()

    @dg.job
    def job() -> None:
        echo_twice()

    flowmesh = {"flowmesh": FlowMeshResource(server_url=live.url, token=tenant)}
    result = job.execute_in_process(instance=instance, resources=flowmesh)
    assert result.success, live.logs()
    assert result.output_for_node("echo_twice") == first.inputs["x"].value  # type: ignore[union-attr]
    outputs = [e for e in result.events_for_node("echo_twice") if e.is_successful_output]
    meta = {k: v.value for k, v in outputs[0].step_output_data.metadata.items()}
    assert meta["flowmesh/node"] == "second"
    # `second` echoes `first`'s result: the same function of the same content, so the
    # same op key, and the action cache answers it without running anything.
    assert (meta["flowmesh/items"], meta["flowmesh/executed"], meta["flowmesh/cache_hit"]) == (
        2,
        1,
        1,
    )
    assert "| first |" in meta["flowmesh/lineage"]
    assert "| second |" in meta["flowmesh/lineage"]


def test_an_asset_invoked_directly_runs_without_a_dagster_run(live: Live, tenant: str) -> None:
    # How users unit-test an asset: no run, no step, so no idempotency key to send.
    words = fresh("direct")

    @dg.asset
    def direct(
        context: dg.AssetExecutionContext, flowmesh: FlowMeshResource
    ) -> dg.Output[list[str]]:
        return flowmesh.run(context, python_operator(ops.echo, {"x": words})).output()

    output = direct(
        context=dg.build_asset_context(),
        flowmesh=FlowMeshResource(server_url=live.url, token=tenant),
    )
    assert output.value == words
    assert output.data_version == dg.DataVersion(digest_value(words))
    assert output.metadata["flowmesh/executed"].value == 1


def test_a_step_retry_reattaches_to_its_submission(
    live: Live, tenant: str, instance: dg.DagsterInstance
) -> None:
    name, token = live.tenant("retry")
    seen: list[str] = []
    words = fresh("retry")

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=1))
    def flaky(
        context: dg.AssetExecutionContext, flowmesh: FlowMeshResource
    ) -> dg.Output[list[str]]:
        result = flowmesh.run(context, python_operator(ops.echo, {"x": words}))
        seen.append(result.workflow_id)
        if context.retry_number == 0:
            raise RuntimeError("the step died after FlowMesh finished")
        return result.output()

    result = dg.materialize([flaky], instance=instance, resources=resources(live, token))
    assert result.success, live.logs()
    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert metadata_of(result, "flaky")["flowmesh/reattached"] is True
    with Client(live.url, token=token) as client:
        stats = client.stats()
    mine = next(t for t in stats.tenants if t.tenant == name)
    assert mine.requested == 1  # asked once: the retry created nothing


def test_a_flowmesh_failure_fails_the_run_with_flowmeshs_message(
    live: Live, tenant: str, instance: dg.DagsterInstance
) -> None:
    bad = f"bad-{uuid.uuid4().hex[:8]}"

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2))
    def doomed(context: dg.AssetExecutionContext, flowmesh: FlowMeshResource) -> dg.Output[str]:
        return flowmesh.run(context, python_operator(ops.fail_on, {"x": bad}, bad=bad)).output()

    result = dg.materialize(
        [doomed], instance=instance, resources=resources(live, tenant), raise_on_error=False
    )
    assert not result.success
    message = failure_message(result)
    assert f"refusing {bad!r}" in message
    assert "FlowMesh workflow" in message
    assert "failed" in message
    # A FlowMesh failure is final: a retry would re-attach to the same failed workflow.
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_an_unreachable_control_plane_is_named_by_its_url(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    @dg.asset
    def unreachable(
        context: dg.AssetExecutionContext, flowmesh: FlowMeshResource
    ) -> dg.Output[int]:
        return flowmesh.run(context, python_operator(ops.echo, {"x": 1})).output()

    result = dg.materialize(
        [unreachable],
        instance=instance,
        resources={"flowmesh": FlowMeshResource(server_url=url, token="fm_nobody")},
        raise_on_error=False,
    )
    assert not result.success
    assert url in failure_message(result)


def test_the_io_manager_verifies_what_it_loads(
    live: Live, tenant: str, instance: dg.DagsterInstance
) -> None:
    label = uuid.uuid4().hex[:8]

    @dg.asset
    def rows() -> list[dict[str, int]]:
        return [{"a": 1}, {"a": 2}, {label: 0}]

    @dg.asset
    def total(rows: list[dict[str, int]]) -> int:
        return sum(row.get("a", 0) for row in rows)

    io = {"io_manager": FlowMeshIOManager(server_url=live.url, token=tenant)}
    first = dg.materialize([rows, total], instance=instance, resources=io)
    assert first.output_for_node("total") == 3
    digest = metadata_of(first, "rows")["flowmesh/digest"]
    path = live.blob_dir / digest.removeprefix("sha256:")[:2] / digest[9:]
    path.chmod(0o600)
    path.write_bytes(b'[{"a":1},{"a":3}]')

    # Only `total` runs: `rows` is loaded from its earlier materialization, and is corrupt.
    second = dg.materialize(
        [rows, total], instance=instance, resources=io, selection=["total"], raise_on_error=False
    )
    assert not second.success
    assert "corrupt" in failure_message(second)


def test_the_io_manager_stores_as_its_tenant_and_no_other_can_load_it(
    live: Live, tenant: str, instance: dg.DagsterInstance
) -> None:
    secret = f"team secret {uuid.uuid4().hex}"

    @dg.asset
    def notes() -> str:
        return secret

    @dg.asset
    def length(notes: str) -> int:
        return len(notes)

    first = dg.materialize(
        [notes, length],
        instance=instance,
        resources={"io_manager": FlowMeshIOManager(server_url=live.url, token=tenant)},
    )
    assert first.output_for_node("length") == len(secret)
    digest = metadata_of(first, "notes")["flowmesh/digest"]
    with Client(live.url, tenant) as owner:
        assert owner.get_blob(digest) == canonical_json(secret)
    _, other = live.tenant("other")
    stolen = dg.materialize(
        [notes, length],
        instance=instance,
        resources={"io_manager": FlowMeshIOManager(server_url=live.url, token=other)},
        selection=["length"],
        raise_on_error=False,
    )
    assert not stolen.success
    assert f"no blob {digest} for this tenant" in failure_message(stolen)


def test_the_io_manager_refuses_values_it_cannot_store_as_json(
    live: Live, tenant: str, instance: dg.DagsterInstance
) -> None:
    @dg.asset
    def odd() -> set[int]:
        return {1, 2}

    result = dg.materialize(
        [odd],
        instance=instance,
        resources={"io_manager": FlowMeshIOManager(server_url=live.url, token=tenant)},
        raise_on_error=False,
    )
    assert not result.success
    assert "FlowMesh stores JSON values" in failure_message(result)


def step_failure(result: dg.ExecuteInProcessResult) -> Any:
    """The ``dagster.Failure`` data of the run's failed step (None: some other exception)."""
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the run did not fail a step"
    return failures[0].step_failure_data.user_failure_data


@pytest.mark.parametrize("case", ["rejected", "unknown_token", "unreachable", "item_failed"])
def test_every_flowmesh_error_is_a_dagster_failure_with_metadata(
    case: str, live: Live, tenant: str, instance: dg.DagsterInstance
) -> None:
    url, token = live.url, tenant
    work: Any = python_operator(ops.echo, {"x": uuid.uuid4().hex})
    if case == "rejected":
        work = {"kind": "data.template", "params": {"no_such_param": 1}, "inputs": {}}
    elif case == "unknown_token":
        token = "fm_nobody"
    elif case == "unreachable":
        url = f"http://127.0.0.1:{free_port()}"
    else:
        bad = uuid.uuid4().hex
        work = python_operator(ops.fail_on, {"x": bad}, bad=bad)

    @dg.asset
    def failing(context: dg.AssetExecutionContext, flowmesh: FlowMeshResource) -> dg.Output[Any]:
        return flowmesh.run(context, work).output()

    result = dg.materialize(
        [failing],
        instance=instance,
        resources={"flowmesh": FlowMeshResource(server_url=url, token=token)},
        raise_on_error=False,
    )
    assert not result.success
    failure = step_failure(result)
    assert failure is not None, f"{case}: not a dagster.Failure:\n{failure_message(result)}"
    description = failure.description or ""
    expected = {
        "rejected": ("FlowMesh refused the request", "InvalidOperatorError"),
        "unknown_token": ("FlowMeshResource's server_url and token", "AuthenticationError"),
        "unreachable": (url, "ServiceUnavailableError"),
        "item_failed": ("failed", None),
    }[case]
    assert expected[0] in description, description
    assert "FLOWMESH_SERVER_URL" not in description  # the settings came from the resource
    if expected[1] is not None:
        assert failure.metadata["flowmesh/error"].value == expected[1], failure.metadata
        assert failure.metadata["flowmesh/server_url"].value == url
    else:
        assert "flowmesh/workflow_id" in failure.metadata


def test_code_versions_follow_the_operator_and_the_check_verifies_the_digest(
    live: Live, tenant: str, instance: dg.DagsterInstance
) -> None:
    x = uuid.uuid4().hex
    operator = python_operator(ops.slow_echo, {"x": x}, delay=0.0)
    same = python_operator(ops.slow_echo, {"x": "other input"}, delay=0.0)
    other_param = python_operator(ops.slow_echo, {"x": x}, delay=0.01)
    version = flowmesh_dagster.code_version(operator)
    assert version == flowmesh_dagster.code_version(same)  # inputs are data, not code
    assert version == flowmesh_dagster.code_version(operator.model_dump(mode="json"))
    assert version != flowmesh_dagster.code_version(other_param)

    @dg.asset(code_version=version)
    def echoed(context: dg.AssetExecutionContext, flowmesh: FlowMeshResource) -> dg.Output[Any]:
        return flowmesh.run(context, operator).output()

    check = flowmesh_dagster.digest_check(echoed)
    result = dg.materialize([echoed, check], instance=instance, resources=resources(live, tenant))
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed, evaluation
    digest = evaluation.metadata["flowmesh/result_digest"].value
    with Client(live.url, tenant) as client:
        assert client.result_json(str(digest)) == x

    # The same check fails for a digest FlowMesh cannot serve (here: not the tenant's).
    other = live.tenant("dagster-other")[1]
    failed = dg.materialize(
        [echoed, check],
        instance=instance,
        resources={"flowmesh": FlowMeshResource(server_url=live.url, token=other)},
        selection=dg.AssetSelection.checks(check),
        raise_on_error=False,
    )
    (evaluation,) = failed.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.metadata["flowmesh/error"].value == "NotFoundError"
