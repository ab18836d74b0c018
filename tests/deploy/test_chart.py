"""The Helm chart, rendered by Helm's engine and checked without a cluster (docs/deploy.md).

What these tests cannot show (a real cluster can): that images pull and pods schedule,
that KEDA's operator reaches the Service and reads the number, that the HPA acts on it,
and that a GPU node's device plugin hands out nvidia.com/gpu. docs/deploy.md says how to
check those on yours.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from flowmesh_core.api import create_app
from flowmesh_core.control import ControlPlane
from flowmesh_core.settings import Settings, load_settings
from tests.deploy._chart import CHART, by_kind, render, validate_object
from tests.integration.api_harness import Harness

NS = "ml"
TOKEN = "fm_admin-token-for-tests"
GPU_POOL = {
    "accelerator": "L4",
    "usd_per_hour": 0.8,
    "watts": 72,
    "boot_s": 120,
    "min_replicas": 0,
    "max_replicas": 8,
    "market": "preemptible",
    "gpus": 2,
    "drainTimeoutS": 300,
    "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
# A trial install with everything on: the in-chart Redis, KEDA, a GPU pool, metrics.
FULL: dict[str, Any] = {
    "redis": {"internal": {"enabled": True}},
    "blobs": {"url": "s3://fm-blobs/prod", "region": "eu-west-1"},
    "settings": {"autoscale_idle_s": 120},
    "extraSettings": {"max_attempts": 5, "utility_weights": {"cost": 2.0}},
    "pools": {"gpu-l4": GPU_POOL},
    "autoscaling": {"enabled": True, "token": TOKEN + "\n"},
    "metrics": {"serviceMonitor": {"enabled": True, "adminToken": True}},
}
# A production install: external Redis and S3 from a Secret the user manages.
EXTERNAL: dict[str, Any] = {
    "existingSecret": "fm-env",
    "autoscaling": {
        "enabled": True,
        "existingTokenSecret": "keda-token",
        "existingTokenSecretKey": "t",
    },
}
MINIMAL: dict[str, Any] = {"redis": {"url": "redis://redis:6379/0"}, "blobs": {"url": "s3://b/p"}}
CASES = {"full": FULL, "external": EXTERNAL, "minimal": MINIMAL}
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest bundled.
KUBE_VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]


@pytest.fixture(scope="module")
def full() -> list[dict[str, Any]]:
    return render(FULL, namespace=NS)[0]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _arg(container: dict[str, Any], flag: str) -> str:
    words = [*container.get("command", []), *container["args"]]
    for word in words:
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {words}")


def _workers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Worker Deployments by pool."""
    return {
        d["metadata"]["labels"]["flowmesh.dev/pool"]: d
        for d in by_kind(objects, "Deployment").values()
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    }


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_fits_its_schema(case: str, kube_version: str) -> None:
    objects, _ = render(CASES[case])
    assert objects
    for obj in objects:
        validate_object(obj, kube_version)


def test_lint_finds_nothing_wrong() -> None:
    report = helm.lint(CHART, MINIMAL, strict=True, kube_version="v1.29.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [], report
    assert problems == [], report


def test_the_validation_catches_a_broken_object() -> None:
    """The checks above can fail: a typo'd field and a wrong type are refused."""
    objects, _ = render(FULL)
    deployment = next(iter(_workers(objects).values()))
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(deployment, KUBE_VERSIONS[0])
    scaled = next(iter(by_kind(objects, "ScaledObject").values()))
    scaled["spec"]["minReplicaCount"] = "zero"
    with pytest.raises(Exception, match="zero"):
        validate_object(scaled, KUBE_VERSIONS[0])


def test_control_plane_is_replicated_probed_and_protected(full: list[dict[str, Any]]) -> None:
    control = by_kind(full, "Deployment")["fm-flowmesh-control"]
    assert control["spec"]["replicas"] >= 2
    container = _container(control)
    assert container["args"][0] == "serve"
    port = int(_arg(container, "--port"))
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    app_paths = {getattr(r, "path", None) for r in create_app(ControlPlane(Settings())).routes}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert get["path"] in app_paths
        assert get["port"] == "http"
    pdb = by_kind(full, "PodDisruptionBudget")["fm-flowmesh-control"]
    assert pdb["spec"]["minAvailable"] < control["spec"]["replicas"]
    pod_labels = control["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = by_kind(full, "Service")["fm-flowmesh-control"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_worker_grace_period_covers_the_drain(full: list[dict[str, Any]]) -> None:
    workers = _workers(full)
    assert set(workers) == {"cpu", "gpu-l4"}
    for pool, deployment in workers.items():
        container = _container(deployment)
        drain = float(_arg(container, "--drain-timeout"))
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= drain, pool
        assert _arg(container, "--pool") == pool
        assert container["command"] == ["flowmesh", "worker"]
    assert float(_arg(_container(workers["gpu-l4"]), "--drain-timeout")) == 300


def test_gpu_pools_get_gpus_their_nodes_and_the_cuda_image(full: list[dict[str, Any]]) -> None:
    workers = _workers(full)
    gpu, cpu = workers["gpu-l4"], workers["cpu"]
    assert _container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == GPU_POOL["gpus"]
    assert "nvidia.com/gpu" not in _container(cpu)["resources"].get("limits", {})
    assert _container(gpu)["image"].startswith("flowmesh-worker-cuda:")
    assert _container(cpu)["image"].startswith("flowmesh-worker:")
    spec = gpu["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == GPU_POOL["nodeSelector"]
    assert spec["tolerations"] == GPU_POOL["tolerations"]
    assert "nodeSelector" not in cpu["spec"]["template"]["spec"]


def test_keda_owns_replicas_only_when_enabled(full: list[dict[str, Any]]) -> None:
    assert all("replicas" not in d["spec"] for d in _workers(full).values())
    minimal = _workers(render(MINIMAL)[0])
    assert minimal["cpu"]["spec"]["replicas"] == 1  # the default pool's min_replicas
    assert by_kind(render(MINIMAL)[0], "ScaledObject") == {}


def test_a_default_pool_can_be_removed_and_env_added() -> None:
    values = MINIMAL | {
        "pools": {"cpu": None, "big": {"max_replicas": 3}},
        "worker": {"extraEnv": [{"name": "HF_HUB_OFFLINE", "value": "1"}]},
    }
    workers = _workers(render(values)[0])
    assert set(workers) == {"big"}
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in _container(workers["big"])["env"]


def test_every_pool_scales_on_its_own_number(full: list[dict[str, Any]]) -> None:
    workers = _workers(full)
    scaled = by_kind(full, "ScaledObject")
    service = by_kind(full, "Service")["fm-flowmesh-control"]
    port = service["spec"]["ports"][0]["port"]
    url = f"http://fm-flowmesh-control.{NS}.svc.cluster.local:{port}/v1/autoscale"
    auths = by_kind(full, "TriggerAuthentication")
    secrets = by_kind(full, "Secret")
    pools = FULL["pools"] | {"cpu": {"min_replicas": 1, "max_replicas": 10}}
    assert {so["spec"]["scaleTargetRef"]["name"] for so in scaled.values()} == {
        d["metadata"]["name"] for d in workers.values()
    }
    for pool, deployment in workers.items():
        so = scaled[deployment["metadata"]["name"]]["spec"]
        (trigger,) = so["triggers"]
        assert trigger["type"] == "metrics-api"
        assert trigger["metadata"]["url"] == url
        assert trigger["metadata"]["valueLocation"] == f"pools.{pool}.desired"
        assert trigger["metadata"]["authMode"] == "bearer"
        assert (trigger["metricType"], trigger["metadata"]["targetValue"]) == ("AverageValue", "1")
        assert so["minReplicaCount"] == pools[pool]["min_replicas"]
        assert so["maxReplicaCount"] == pools[pool]["max_replicas"]
        behavior = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 120 == so["cooldownPeriod"]
        (ref,) = auths[trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"]
        assert ref["parameter"] == "token"
        assert secrets[ref["name"]]["stringData"][ref["key"]] == TOKEN


def test_an_existing_secret_is_used_as_given() -> None:
    objects, _ = render(EXTERNAL)
    assert by_kind(objects, "Secret") == {}
    (auth,) = by_kind(objects, "TriggerAuthentication").values()
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "token", "name": "keda-token", "key": "t"}
    ]
    for deployment in by_kind(objects, "Deployment").values():
        env_from = _container(deployment)["envFrom"]
        assert {"secretRef": {"name": "fm-env"}} in env_from


def test_the_in_chart_redis_is_what_the_pods_use(full: list[dict[str, Any]]) -> None:
    (redis,) = by_kind(full, "StatefulSet").values()
    assert _container(redis)["image"].startswith("redis:7")
    service = by_kind(full, "Service")[redis["spec"]["serviceName"]]
    env = by_kind(full, "Secret")["fm-flowmesh-env"]["stringData"]
    assert env["FLOWMESH_REDIS_URL"] == f"redis://{service['metadata']['name']}:6379/0"
    assert "StatefulSet" not in {o["kind"] for o in render(MINIMAL)[0]}


def _pod_environment(objects: list[dict[str, Any]]) -> dict[str, str]:
    (config,) = by_kind(objects, "ConfigMap").values()
    env = dict(config["data"])
    for secret in by_kind(objects, "Secret").values():
        if "FLOWMESH_REDIS_URL" in secret.get("stringData", {}):
            env.update(secret["stringData"])
    return env


def test_pods_environment_is_valid_flowmesh_settings(
    full: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FlowMesh itself reads the ConfigMap and Secret: unknown or bad settings would stop
    every pod at start."""
    for name, value in _pod_environment(full).items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert set(settings.pools) == set(_workers(full))
    assert settings.pools["gpu-l4"].gpu
    assert not settings.pools["cpu"].gpu
    assert settings.pools["gpu-l4"].max_replicas == GPU_POOL["max_replicas"]
    assert settings.autoscale_idle_s == 120
    assert settings.max_attempts == 5
    assert settings.utility_weights == {"cost": 2.0}
    assert settings.blob_url == FULL["blobs"]["url"]
    assert settings.s3_region == "eu-west-1"


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The real Redis only: the endpoint's JSON does not depend on the store."""
    return redis_url


async def test_value_locations_resolve_in_the_real_endpoint(
    harness: Harness, full: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ScaledObject's valueLocation, read the way KEDA reads it (a GJSON path), finds
    a number in what GET /v1/autoscale answers with the chart's pools."""
    pools_json = _pod_environment(full)["FLOWMESH_POOLS"]
    monkeypatch.setenv("FLOWMESH_POOLS", pools_json)
    app = await harness.app()
    client = await harness.client(app, await harness.tenant("keda", admin=True))
    response = await client.get("/v1/autoscale")
    assert response.status_code == 200, response.text
    body = response.json()
    for so in by_kind(full, "ScaledObject").values():
        location = so["spec"]["triggers"][0]["metadata"]["valueLocation"]
        # GJSON: a dotted path; pool names hold none of its special characters.
        assert re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9_-]+)+", location), location
        value: Any = body
        for key in location.split("."):
            value = value[key]
        assert isinstance(value, int), (location, value)
        assert value >= 0, (location, value)


BAD_VALUES = [
    ({"controlPlane": {"replicas": -1}}, "/controlPlane/replicas"),
    ({"controlPlane": {"replicas": 0}}, "/controlPlane/replicas"),
    ({"controlPlane": {"replica": 3}}, "replica"),
    ({"pools": {"GPU": {"max_replicas": 2}}}, "invalid propertyName 'GPU'"),
    ({"pools": {"gpu": {"max_replicas": -2}}}, "/pools/gpu/max_replicas"),
    ({"pools": {"gpu": {"max_replicas": 2, "gpus": 0}}}, "/pools/gpu/gpus"),
    ({"pools": {"gpu": {"max_replicas": 2, "market": "spot"}}}, "/pools/gpu/market"),
    ({"worker": {"drainTimeoutS": 0}}, "/worker/drainTimeoutS"),
    ({"settings": {"dedup_domain": "world"}}, "/settings/dedup_domain"),
    ({"redis": {"url": "localhost:6379"}}, "/redis/url"),
]


@pytest.mark.parametrize(("bad", "where"), BAD_VALUES)
def test_the_values_schema_rejects_bad_values(bad: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        render(MINIMAL | bad)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"redis": {"url": "redis://r:6379/0"}}, "set blobs.url"),
        ({"blobs": {"url": "s3://b"}}, "set redis.url"),
        (MINIMAL | {"autoscaling": {"enabled": True}}, "flowmesh tenant create keda --admin"),
        (
            MINIMAL | {"pools": {"cpu": {"min_replicas": 5, "max_replicas": 2}}},
            "min_replicas (5) exceeds max_replicas (2)",
        ),
        (MINIMAL | {"extraSettings": {"redis_url": "redis://x"}}, "settings.redis_url"),
    ],
)
def test_missing_or_contradictory_values_say_what_to_fix(values: dict[str, Any], says: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(says)):
        render(values)


def test_notes_say_how_to_see_the_recommendation() -> None:
    _, notes = render(FULL, namespace=NS)
    assert "kubectl -n ml exec deploy/fm-flowmesh-control -- flowmesh autoscale" in notes
    assert "gpu-l4: deploy/fm-flowmesh-worker-gpu-l4, 0..8 replicas, 2 nvidia.com/gpu each" in notes
    _, notes = render(MINIMAL)
    assert "flowmesh tenant create keda --admin" in notes
    assert "flowmesh tenant create keda --admin --token-file keda.token" in notes


def test_the_values_in_docs_deploy_render_and_validate() -> None:
    """docs/deploy.md's example values are a working install, with autoscaling on."""
    page = (CHART.parents[2] / "docs" / "deploy.md").read_text()
    block = re.search(r"```yaml\n(# flowmesh-values.yaml\n.*?)```", page, re.S)
    assert block is not None
    values = yaml.safe_load(block[1])
    values["autoscaling"] = {"enabled": True, "token": TOKEN}
    objects, _ = render(values)
    for obj in objects:
        validate_object(obj, KUBE_VERSIONS[0])
    assert set(_workers(objects)) == {"cpu", "gpu-l4"}
    assert len(by_kind(objects, "ScaledObject")) == 2
