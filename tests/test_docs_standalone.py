"""The documentation stands alone: nothing shipped cites a file outside the repository.

The docs, the README, the systemd units and the code once pointed at design notes, VALR
API notes and a trading plan that are not part of the repository (the names are in
FORBIDDEN); what they carried now lives in docs/ (the control API in docs/api.md). And
the units' ``Documentation=`` names files the install steps of docs/operations.md really
put there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Spelled in pieces so this file does not match itself when someone greps for them.
FORBIDDEN = re.compile("|".join(re.escape(n) for n in (
    "design" + ".md", "valr-api" + ".md", "seed-live" + "-trading-plan", "seed-live" + "-plan",
)), re.IGNORECASE)  # fmt: skip
DOC_ROOT = "/usr/share/doc/heliosd/"


def _hidden(path: Path) -> bool:
    """A venv or cache under the tree (bench/.peers-venv): not ours."""
    return any(part.startswith(".") for part in path.relative_to(ROOT).parts)


def shipped() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += sorted(p for p in (ROOT / "systemd").iterdir() if p.is_file())
    # The tests, plugins, benchmarks and configs too: a maintainer reads them as the contract.
    for tree in ("heliosd", "tests", "plugins", "bench", "etc"):
        files += sorted(p for p in (ROOT / tree).rglob("*") if p.is_file()
                        and p.suffix in (".py", ".md", ".toml", ".txt", ".service", ".yml")
                        and p != Path(__file__).resolve() and not _hidden(p))  # fmt: skip
    return files


def test_nothing_shipped_cites_the_external_design_notes() -> None:
    files = shipped()
    assert len(files) > 50 and ROOT / "docs" / "api.md" in files
    hits = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert hits == [], "\n".join(hits)


@pytest.mark.parametrize("unit", sorted(p.name for p in (ROOT / "systemd").glob("*.service")))
def test_documentation_points_at_files_the_install_puts_there(unit: str) -> None:
    text = (ROOT / "systemd" / unit).read_text(encoding="utf-8")
    [line] = [ln for ln in text.splitlines() if ln.startswith("Documentation=")]
    targets = line.removeprefix("Documentation=").split()
    assert targets, line
    install = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for target in targets:
        assert target.startswith("file:" + DOC_ROOT), target
        relative = target.removeprefix("file:" + DOC_ROOT)
        assert (ROOT / relative).is_file(), f"{target}: no {relative} in the repository"
        # The install steps copy README.md and docs/*.md to where the unit points.
        where = DOC_ROOT + (str(Path(relative).parent) + "/" if "/" in relative else relative)
        copied = [ln for ln in install.splitlines() if "install -m 0644" in ln and where in ln]
        assert copied, f"{target}: no install step in docs/operations.md copies it there"
