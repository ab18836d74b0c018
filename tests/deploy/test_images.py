"""The Dockerfiles in deploy/docker/, checked without a Docker engine (docs/deploy.md).

They are parsed (``dockerfile-parse``), their build context is worked out from
``.dockerignore``, and the control plane's build stage is replayed here: its ``COPY`` and
``uv sync`` lines run as written, and the environment they make is inspected. What only
``docker build`` shows: the base images' contents, the CUDA image's vLLM install (it
downloads vLLM and its CUDA torch), and the images' run-time behaviour.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy._dockerfile import Stage, replay_build, stages
from tests.deploy._dockerignore import is_excluded, read_patterns

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
FILES = {
    "control": DOCKER / "Dockerfile.control",
    "worker": DOCKER / "Dockerfile.worker",
    "worker-cuda": DOCKER / "Dockerfile.worker-cuda",
}
PACKAGE = {
    "control": "flowmesh-core",
    "worker": "flowmesh-worker",
    "worker-cuda": "flowmesh-worker",
}


@pytest.fixture(scope="module")
def context() -> set[str]:
    """The files a ``docker build .`` at the repository root sends (tracked ones)."""
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    patterns = read_patterns(ROOT / ".dockerignore")
    return {f for f in tracked if (ROOT / f).is_file() and not is_excluded(f, patterns)}


def _final(path: Path) -> Stage:
    return stages(path)[1][-1]


def _uv_syncs(path: Path) -> list[list[str]]:
    """The words of every ``uv sync`` command in the Dockerfile's RUN lines."""
    out = []
    for stage in stages(path)[1]:
        for run in stage.all("RUN"):
            for command in re.split(r"&&", run.value):
                words = [w for w in shlex.split(command) if not w.startswith("--mount=")]
                if words[:2] == ["uv", "sync"]:
                    out.append(words)
    return out


@pytest.mark.parametrize("image", sorted(FILES))
def test_multi_stage_and_non_root(image: str) -> None:
    _, all_stages = stages(FILES[image])
    assert len(all_stages) >= 2
    final = all_stages[-1]
    (user,) = final.all("USER")
    name = user.value.split(":")[0].strip()
    assert name not in {"root", "0"}
    assert name.isdigit(), "a numeric USER lets Kubernetes check runAsNonRoot"
    # the final stage copies the built environment, it does not build one
    assert not any("uv sync" in run.value for run in final.all("RUN"))
    assert any(c.flags_and_args()[0].get("from") == "build" for c in final.all("COPY"))


@pytest.mark.parametrize("image", sorted(FILES))
def test_installs_from_the_lock_only(image: str) -> None:
    syncs = _uv_syncs(FILES[image])
    assert syncs
    for words in syncs:
        assert {"--frozen", "--no-dev"} <= set(words), words
        assert words[words.index("--package") + 1] == PACKAGE[image]


def test_uv_version_is_the_one_the_makefile_uses() -> None:
    wanted = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert wanted is not None
    for path in FILES.values():
        assert stages(path)[0]["UV_VERSION"] == wanted[1]


def _closure(lock: dict[str, object], package: str) -> set[str]:
    packages = {p["name"]: p for p in lock["package"]}  # type: ignore[attr-defined]
    seen: set[str] = set()
    todo = [package]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(d["name"] for d in packages[name].get("dependencies", []))
    return seen


def test_the_control_image_has_no_torch() -> None:
    """What ``uv sync --package flowmesh-core`` installs, read from uv.lock itself."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    control = _closure(lock, "flowmesh-core")
    worker = _closure(lock, "flowmesh-worker")
    assert "torch" in worker
    assert not {"torch", "transformers", "vllm", "apache-airflow", "prefect", "dagster"} & control
    cuda = _uv_syncs(FILES["worker-cuda"])
    assert all(w[w.index("--no-install-package") + 1] == "torch" for w in cuda)


@pytest.mark.parametrize("image", sorted(FILES))
def test_every_copy_source_is_in_the_build_context(image: str, context: set[str]) -> None:
    for stage in stages(FILES[image])[1]:
        for copy in stage.all("COPY"):
            flags, words = copy.flags_and_args()
            if "from" in flags:
                continue
            for source in words[:-1]:
                found = source in context or any(f.startswith(source + "/") for f in context)
                assert found, f"{image}: COPY {source} is missing or .dockerignore'd"


def test_the_context_leaves_out_what_images_never_need(context: set[str]) -> None:
    assert "uv.lock" in context
    assert any(f.startswith("flowmesh_core/src/flowmesh_core/") for f in context)
    for prefix in (".git/", ".venv/", "tests/", "bench/", "docs/", "integrations/airflow/src/"):
        assert not any(f.startswith(prefix) for f in context), prefix


def test_the_control_plane_has_a_healthcheck_on_its_served_path() -> None:
    (check,) = _final(FILES["control"]).all("HEALTHCHECK")
    assert "http://127.0.0.1:8470/healthz" in check.value
    (cmd,) = _final(FILES["control"]).all("CMD")
    assert "--port" in cmd.value
    assert '"8470"' in cmd.value


@pytest.mark.timeout(300)
def test_the_control_build_stage_runs_and_installs_no_torch(
    context: set[str], tmp_path: Path
) -> None:
    """The build stage's own COPY and uv sync lines, run here against uv.lock."""
    uv = shutil.which("uv") or str(ROOT / ".uv-bootstrap" / "bin" / "uv")
    assert Path(uv).exists(), "uv is installed by `make sync`"
    workdir = replay_build(FILES["control"], "build", context, ROOT, tmp_path, uv)
    venv = tmp_path / "opt" / "flowmesh"
    installed = {
        p.name.split("-")[0].lower()
        for p in (venv / "lib" / "python3.11" / "site-packages").glob("*.dist-info")
    }
    assert "flowmesh_core" in installed
    assert not {"torch", "transformers", "flowmesh_worker"} & installed
    help_text = subprocess.run(
        [venv / "bin" / "flowmesh", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--graceful-timeout" in help_text
    # --no-editable: the environment does not point back into the build's sources
    shutil.rmtree(workdir / "flowmesh_core")
    subprocess.run([venv / "bin" / "python", "-c", "import flowmesh_core.api"], check=True)
