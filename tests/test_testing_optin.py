"""heliosd.testing is opt-in: installing heliosd adds nothing to another project's pytest
runs, and the helpers import without pytest (benchmarks and plugins' own tools use them).

Each check runs a real ``python -m pytest`` (or python) in a directory of its own, outside
this repository, so none of this suite's configuration applies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FOREIGN_TEST = "def test_unrelated():\n    assert True\n"


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_another_projects_pytest_gets_no_heliosd_fixtures(tmp_path: Path) -> None:
    (tmp_path / "test_foreign.py").write_text(FOREIGN_TEST)
    plain = run(tmp_path, "-m", "pytest", "-p", "no:cacheprovider", "--fixtures", "-q")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "heliosd_sim" not in plain.stdout and "_forget_dropins" not in plain.stdout
    opted = run(tmp_path, "-m", "pytest", "-p", "no:cacheprovider", "-p",
                "heliosd.testing.plugin", "--fixtures", "-q")  # fmt: skip
    assert opted.returncode == 0, opted.stdout + opted.stderr
    for name in ("heliosd_sim", "heliosd_daemon", "heliosd_process", "heliosd_short_dir"):
        assert name in opted.stdout


def test_the_helpers_import_without_pytest(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['pytest'] = None\n"  # any import of pytest now fails
        "sys.modules['pytest_asyncio'] = None\n"
        "from heliosd.testing import DaemonProcess, start_sim, write_config, wait_for\n"
        "print('ok')\n"
    )
    result = run(tmp_path, "-c", code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
