"""Stray ``FLOWMESH_*`` variables: one that names no setting is ignored with a warning (a
user's own ``FLOWMESH_BIN`` must not break every command); one that misspells a setting
is still an error, so a typo never falls back to a default silently (README, settings)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flowmesh_core.errors import UnknownSettingError
from flowmesh_core.settings import load_settings


def test_a_stray_variable_is_ignored_with_a_warning(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FLOWMESH_BIN", "/opt/flowmesh/bin")
    monkeypatch.setenv("FLOWMESH_KEY_PREFIX", "mine")
    with caplog.at_level(logging.WARNING, logger="flowmesh_core.settings"):
        settings = load_settings()
    assert settings.key_prefix == "mine"
    assert any("FLOWMESH_BIN" in r.getMessage() for r in caplog.records), caplog.text


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("FLOWMESH_REDIS_ULR", "FLOWMESH_REDIS_URL"),
        ("FLOWMESH_MAX_BODY_BYTE", "FLOWMESH_MAX_BODY_BYTES"),
    ],
)
def test_a_misspelt_setting_is_still_an_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, meant: str
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(UnknownSettingError, match=f"{variable} names no setting.*{meant} misspelt"):
        load_settings()
