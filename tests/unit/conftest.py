"""Fixtures shared by the unit tests: a process environment with no FlowMesh settings in it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``FLOWMESH_*`` variable, an empty working directory, a private XDG data dir.

    ``load_settings`` reads the environment and ``./flowmesh.toml``; without this a
    developer's own configuration would leak into the assertions.
    """
    for name in list(os.environ):
        if name.upper().startswith("FLOWMESH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
