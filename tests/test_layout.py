"""The house rule of issue 17: no module of the core over 400 lines.

A module past that has usually grown a second owner; split it by what each part owns (the
splits so far: docs/internals.md's module map), in a commit of its own. The limit is checked
here so that the next module to grow is noticed when it does, not at the next review."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "heliosd"
LIMIT = 400


def test_no_module_of_the_core_is_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert len(sizes) > 100  # the walk found the package
    over = {path: n for path, n in sorted(sizes.items()) if n > LIMIT}
    assert over == {}, f"modules over {LIMIT} lines: {over}"


def test_the_documented_schema_names_every_table_and_migration() -> None:
    """docs/internals.md's schema section went stale twice (a column renamed, a migration
    added); this keeps its table list and its migration count with the code."""
    import re
    import sqlite3

    from heliosd.store.migrations import MIGRATIONS

    conn = sqlite3.connect(":memory:")
    for script in MIGRATIONS:
        conn.executescript(script)
    tables = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )}  # fmt: skip
    doc = (PACKAGE.parent / "docs" / "internals.md").read_text()
    section = doc[doc.index("## Store schema") :]
    section = section[: section.index("\n## ", 1)]
    heading = re.match(r"## Store schema \(migrations 1-(\d+)\)", section)
    assert heading is not None and int(heading.group(1)) == len(MIGRATIONS)
    assert {t for t in tables if not re.search(rf"^{t}\(", section, re.M)} == set()
