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
