"""Every distribution builds as a wheel, and each adapter installs alone from those wheels.

The distribution names (README, "Repository") are ours, not the unrelated ``flowmesh*``
projects on PyPI: an adapter must get ``flowmesh-core`` from the wheel built here, never
from a registry. One module fixture builds all five wheels with ``uv build --wheel`` into a
temporary directory; each adapter then goes into its own fresh venv with the core's wheel,
given as files, and every other dependency from the machine's package index, pinned to
``uv.lock`` (``uv export``) so the install matches the tested environment and is served
from uv's cache. The venv must import the adapter from its own site-packages and hold
neither the worker, nor torch, nor the other adapters.
"""

from __future__ import annotations

import email.message
import email.parser
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".uv-bootstrap" / "bin" / "uv"

DISTRIBUTIONS = {
    "flowmesh-core": "flowmesh_core",
    "flowmesh-worker": "flowmesh_worker",
    "airflow-provider-flowmesh": "flowmesh_airflow",
    "prefect-flowmesh": "flowmesh_prefect",
    "dagster-flowmesh": "flowmesh_dagster",
}
ADAPTERS = ["airflow-provider-flowmesh", "prefect-flowmesh", "dagster-flowmesh"]
# What an adapter's venv must not hold: FlowMesh's worker, the other adapters, torch and
# the unrelated projects' names.
FOREIGN = {
    "flowmesh",
    "flowmesh-worker",
    "torch",
    *ADAPTERS,
}
# The entry point through which each orchestrator finds its adapter (none for Dagster).
ENTRY_POINTS = {
    "airflow-provider-flowmesh": "apache_airflow_provider",
    "prefect-flowmesh": "prefect.collections",
    "dagster-flowmesh": None,
}
ORCHESTRATOR = {
    "airflow-provider-flowmesh": "apache-airflow",
    "prefect-flowmesh": "prefect",
    "dagster-flowmesh": "dagster",
}


@dataclass
class Built:
    """The wheels of one build, by distribution name, and the lock's pins."""

    wheels: dict[str, Path]
    constraints: Path
    scratch: Path


def _uv(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    done = subprocess.run(
        [str(UV), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"uv {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    scratch = tmp_path_factory.mktemp("wheels")
    out = scratch / "dist"
    _uv("build", "--wheel", "--all-packages", "--out-dir", str(out))
    wheels: dict[str, Path] = {}
    for wheel in sorted(out.glob("*.whl")):
        name = _metadata(wheel)["Name"]
        assert name not in wheels, f"two wheels for {name}: {wheel.name}"
        wheels[name] = wheel
    constraints = scratch / "constraints.txt"
    _uv(
        "export",
        "--frozen",
        "--no-hashes",
        "--all-packages",
        "--no-emit-workspace",
        "--no-header",
        "--quiet",
        "--output-file",
        str(constraints),
    )
    return Built(wheels=wheels, constraints=constraints, scratch=scratch)


def test_every_distribution_builds_under_its_own_name(built: Built) -> None:
    assert set(built.wheels) == set(DISTRIBUTIONS)
    for name, package in DISTRIBUTIONS.items():
        with zipfile.ZipFile(built.wheels[name]) as archive:
            assert f"{package}/__init__.py" in archive.namelist(), (name, package)


def test_core_wheel_ships_the_dashboard_and_its_vendored_libraries(built: Built) -> None:
    """``flowmesh serve`` serves /ui from the installed package (docs/ui.md): every file
    under ui/static/, the vendored graph libraries and their licences included."""
    static = ROOT / "flowmesh_core" / "src" / "flowmesh_core" / "ui" / "static"
    wanted = {
        "flowmesh_core/ui/static/" + p.relative_to(static).as_posix()
        for p in static.rglob("*")
        if p.is_file()
    }
    assert "flowmesh_core/ui/static/vendor/cytoscape.min.js" in wanted
    assert "flowmesh_core/ui/static/vendor/cytoscape.LICENSE" in wanted
    with zipfile.ZipFile(built.wheels["flowmesh-core"]) as archive:
        assert wanted <= set(archive.namelist()), wanted - set(archive.namelist())


@pytest.mark.parametrize("name", [*ADAPTERS, "flowmesh-worker"])
def test_requires_our_core_with_a_version_range(built: Built, name: str) -> None:
    requires = _metadata(built.wheels[name]).get_all("Requires-Dist") or []
    ours = [r for r in requires if r.replace("_", "-").lower().startswith("flowmesh")]
    assert ours == ["flowmesh-core<0.2,>=0.1"], (name, ours)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_installs_alone_into_a_fresh_venv(built: Built, name: str) -> None:
    venv = built.scratch / f"venv-{name}"
    _uv("venv", "--quiet", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    _uv(
        "pip",
        "install",
        "--quiet",
        "--python",
        str(python),
        "--constraint",
        str(built.constraints),
        str(built.wheels[name]),
        str(built.wheels["flowmesh-core"]),
        timeout=200,
    )
    package = DISTRIBUTIONS[name]
    probe = f"""
import importlib, importlib.metadata as md, json, sys
names = {{d.metadata["Name"].lower() for d in md.distributions()}}
mod = importlib.import_module("{package}")
core = importlib.import_module("flowmesh_core.client")
eps = {{e.group: e.value for e in md.distribution("{name}").entry_points}}
print(json.dumps({{"names": sorted(names), "adapter": mod.__file__, "core": core.__file__,
                  "prefix": sys.prefix, "entry_points": eps}}))
"""
    done = subprocess.run(
        [str(python), "-c", probe],
        cwd=built.scratch,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(built.scratch)},
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    names = set(seen["names"])
    assert {name, "flowmesh-core", ORCHESTRATOR[name]} <= names
    assert not (names & (FOREIGN - {name})), sorted(names & (FOREIGN - {name}))
    site = Path(seen["prefix"]).resolve()
    assert site == venv.resolve()
    for module_file in (seen["adapter"], seen["core"]):
        assert Path(module_file).resolve().is_relative_to(site), module_file
    group = ENTRY_POINTS[name]
    if group is not None:
        assert seen["entry_points"].get(group, "").startswith(package), seen["entry_points"]
