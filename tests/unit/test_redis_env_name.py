"""The variable that points the tests at a Redis has one name everywhere: TEST_REDIS_URL.

Under a ``FLOWMESH_`` name it would break every settings load (settings reject
``FLOWMESH_*`` variables that name no setting), so the pytest marker text, the fixture
that reads it and the docs and scripts that mention it must agree on the plain name.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from flowmesh_core.errors import UnknownSettingError
from flowmesh_core.settings import load_settings
from tests.conftest import TEST_REDIS_ENV

ROOT = Path(__file__).resolve().parents[2]
MENTION = re.compile(r"\b\w*TEST_REDIS_URL\b")


def test_the_fixture_reads_the_plain_name() -> None:
    assert TEST_REDIS_ENV == "TEST_REDIS_URL"


def test_the_redis_marker_names_the_variable_the_fixture_reads() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    markers = config["tool"]["pytest"]["ini_options"]["markers"]
    (redis,) = [m for m in markers if m.startswith("redis:")]
    assert MENTION.findall(redis) == [TEST_REDIS_ENV]


def test_docs_and_scripts_name_it_the_same() -> None:
    files = [ROOT / "README.md", ROOT / "Makefile", *ROOT.glob("docs/**/*.md")]
    files += [*ROOT.glob("scripts/*"), *ROOT.glob(".ci/*")]
    named = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        if path.is_file()
        for name in MENTION.findall(path.read_text(errors="replace"))
        if name != TEST_REDIS_ENV
    }
    assert not named


def test_settings_load_with_it_set_and_refuse_the_prefixed_name(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TEST_REDIS_ENV, "redis://127.0.0.1:6379/0")
    load_settings()
    monkeypatch.setenv(f"FLOWMESH_{TEST_REDIS_ENV}", "redis://127.0.0.1:6379/0")
    with pytest.raises(UnknownSettingError, match=f"FLOWMESH_{TEST_REDIS_ENV}"):
        load_settings()
