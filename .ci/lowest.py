"""Print pip constraints pinning every runtime dependency to the lowest version pyproject.toml
allows (its ``>=`` floor), for ``make test-lowest``: a floor nobody installs is a guess.

Dev tools (pytest, mypy, ...) are left free: they test the code, they are not what an
operator installs. A ``!=`` exclusion next to a floor is kept."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$")


def constraints(pyproject: Path) -> list[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = []
    for dep in deps:
        match = SPEC.match(dep)
        if match is None:
            raise SystemExit(f"cannot read dependency {dep!r}")
        name, spec = match.group(1).split("[")[0], match.group(2)
        floor = re.search(r">=\s*([0-9][^,;\s]*)", spec)
        if floor is None:
            raise SystemExit(f"dependency {dep!r} has no >= floor: make test-lowest cannot test it")
        out.append(f"{name}=={floor.group(1)}")
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    print("\n".join(constraints(root / "pyproject.toml")))
