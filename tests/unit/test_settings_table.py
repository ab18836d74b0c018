"""README's settings table has a row for every setting, and no row for one that is gone
(the README is the settings' reference page)."""

from __future__ import annotations

import re
from pathlib import Path

from flowmesh_core.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(\w+)` \| ", re.MULTILINE)


def _table() -> set[str]:
    text = README.read_text()
    section = text[text.index("\n## Settings\n") :]
    section = section[: section.index("\n## ", 1)]
    return set(ROW.findall(section))


def test_every_setting_has_a_row_in_the_readme() -> None:
    assert set(Settings.model_fields) - _table() == set()


def test_every_row_names_a_setting() -> None:
    assert _table() - set(Settings.model_fields) == set()
