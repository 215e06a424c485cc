"""docs/configuration.md against heliosd/core/config.py: every key, nothing stale, true defaults.

Each ``## [section]`` of the document has a table whose rows start with a `key` and end
with its default written as TOML. The defaults are read back through heliosd's own config
parser and compared with the built-in defaults, so the document cannot drift from the code.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from heliosd.core.config import Settings, parse_settings, section_keys

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
_ROW = re.compile(r"^\|\s*`([a-z_]+)`\s*\|")
_LITERAL = re.compile(r"`([^`]*)`")


def documented() -> dict[str, dict[str, list[str]]]:
    """{section: {key: [key, meaning, unit, default] cells}} from the per-section tables."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## \[([a-z_]+)\]\s*$", line)
        if heading:
            current = sections.setdefault(heading.group(1), {})
        elif line.startswith("## "):
            current = None  # other chapters: plugin sections, the demo
        elif current is not None and (row := _ROW.match(line)):
            key = row.group(1)
            assert key not in current, f"{key} documented twice in one section"
            current[key] = [c.strip() for c in line.strip().strip("|").split("|")]
    return sections


def test_every_key_is_documented_and_no_other() -> None:
    docs = documented()
    keys = section_keys()
    assert sorted(docs) == sorted(keys)
    for section, names in keys.items():
        missing = sorted(set(names) - set(docs[section]))
        stale = sorted(set(docs[section]) - set(names))
        assert not missing, f"[{section}] keys missing from {DOC.name}: {missing}"
        assert not stale, f"[{section}] keys documented but unknown to heliosd: {stale}"


def test_every_row_has_meaning_unit_and_default() -> None:
    for section, rows in documented().items():
        for key, cells in rows.items():
            assert len(cells) == 4, f"[{section}] {key}: expected key | meaning | unit | default"
            assert all(cells), f"[{section}] {key}: an empty cell"


@pytest.mark.parametrize(
    ("section", "key"), [(s, k) for s, names in section_keys().items() for k in names]
)
def test_documented_default_is_the_real_default(section: str, key: str) -> None:
    cell = documented()[section][key][-1]
    literal = _LITERAL.search(cell)
    assert literal, f"[{section}] {key}: the default cell has no `TOML value`: {cell!r}"
    value = tomllib.loads(f"v = {literal.group(1)}")["v"]
    parsed = parse_settings({section: {key: value}}, source=str(DOC))
    assert getattr(getattr(parsed, section), key) == getattr(getattr(Settings(), section), key)
