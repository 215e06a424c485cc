"""The systemd units: what the daemon relies on, systemd's own verdict, and the exposure score."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from heliosd.core.config import DaemonSettings
from heliosd.runtime.runlock import EXIT_LOCKED

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "heliosd.service"
TEMPLATE = ROOT / "systemd" / "heliosd@.service"
PRODUCTION_CONFIG = ROOT / "etc" / "heliosd.toml"
ANALYZE = shutil.which("systemd-analyze")
# Python needs a moment after the drain to close the loop, the store and exit.
EXIT_MARGIN_S = Decimal(5)
MAX_EXPOSURE = 2.0


def directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}}; systemd keys may repeat."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def one(unit: dict[str, dict[str, list[str]]], key: str) -> str:
    [value] = unit["Service"][key]
    return value


def seconds(value: str) -> Decimal:
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, f"unsupported time span {value!r}"
    return Decimal(m[1]) * (60 if m[2] == "min" else 1)


@pytest.mark.parametrize("path", [UNIT, TEMPLATE], ids=lambda p: p.name)
def test_unit_has_what_the_daemon_relies_on(path: Path) -> None:
    unit = directives(path)
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"
    assert seconds(one(unit, "WatchdogSec")) == 30
    assert one(unit, "Restart") == "on-failure"
    # 78: broken config; 73: another heliosd holds the state directory (heliosd.runtime.runlock).
    assert one(unit, "RestartPreventExitStatus").split() == ["78", str(EXIT_LOCKED)]
    assert one(unit, "User") == "heliosd"
    assert one(unit, "DynamicUser") == "no"
    assert one(unit, "StateDirectoryMode") == "0700"
    assert one(unit, "RuntimeDirectoryMode") == "0750"
    assert one(unit, "UMask") == "0077"
    assert one(unit, "RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6"
    assert one(unit, "CapabilityBoundingSet") == ""
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "MemoryDenyWriteExecute", "RestrictSUIDSGID", "LockPersonality"):  # fmt: skip
        assert one(unit, key) == "yes", key
    assert one(unit, "ProtectSystem") == "strict"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("path", [UNIT, TEMPLATE], ids=lambda p: p.name)
def test_stop_timeout_covers_the_daemons_shutdown_budget(path: Path) -> None:
    stop = seconds(one(directives(path), "TimeoutStopSec"))
    assert stop >= DaemonSettings().shutdown_timeout_s + EXIT_MARGIN_S
    with PRODUCTION_CONFIG.open("rb") as fh:
        configured = Decimal(str(tomllib.load(fh)["daemon"]["shutdown_timeout_s"]))
    assert stop >= configured + EXIT_MARGIN_S


def test_single_unit_matches_the_production_config() -> None:
    unit = directives(UNIT)
    with PRODUCTION_CONFIG.open("rb") as fh:
        config = tomllib.load(fh)
    assert one(unit, "ExecStart") == "/usr/bin/heliosd run --config /etc/heliosd/heliosd.toml"
    state_dir = Path("/var/lib") / one(unit, "StateDirectory")
    runtime_dir = Path("/run") / one(unit, "RuntimeDirectory")
    assert Path(config["daemon"]["state_dir"]) == state_dir
    assert Path(config["daemon"]["control_socket"]).parent == runtime_dir
    # Every {"$credential" = NAME} of the config is loaded by the unit.
    credentials = {v.split(":", 1)[0] for v in unit["Service"]["LoadCredential"]}
    assert credentials == {config["valr"]["api_key"]["$credential"],
                           config["valr"]["api_secret"]["$credential"]}  # fmt: skip
    for value in unit["Service"]["LoadCredential"]:
        name, _, source = value.partition(":")
        assert source == f"/etc/heliosd/credentials/{name}"


def test_template_is_per_instance_and_otherwise_the_same_unit() -> None:
    single, template = directives(UNIT)["Service"], directives(TEMPLATE)["Service"]
    assert template["ExecStart"] == ["/usr/bin/heliosd run --config /etc/heliosd/%i.toml"]
    assert template["StateDirectory"] == ["heliosd/%i"]
    assert template["RuntimeDirectory"] == ["heliosd/%i"]
    assert template["LoadCredential"] == [
        "valr_api_key:/etc/heliosd/credentials/%i/valr_api_key",
        "valr_api_secret:/etc/heliosd/credentials/%i/valr_api_secret",
    ]
    per_instance = {"ExecStart", "StateDirectory", "RuntimeDirectory", "LoadCredential"}
    assert {k: v for k, v in template.items() if k not in per_instance} == {
        k: v for k, v in single.items() if k not in per_instance
    }


def installable_copy(src: Path, tmp_path: Path, name: str) -> Path:
    """A copy whose ExecStart binary exists here (verify checks that it does)."""
    true = shutil.which("true") or "/bin/true"
    text = src.read_text().replace("/usr/bin/heliosd", true)
    dest = tmp_path / name
    dest.write_text(text)
    return dest


def run_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    proc = subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)
    output = proc.stdout + proc.stderr
    if "not been booted with systemd" in output or "Failed to connect to bus" in output:
        pytest.skip(f"systemd-analyze needs a running systemd here: {output.strip()[:200]}")
    return proc


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize(
    ("src", "name"), [(UNIT, "heliosd.service"), (TEMPLATE, "heliosd@main.service")]
)
def test_systemd_analyze_verify_accepts_the_unit(src: Path, tmp_path: Path, name: str) -> None:
    unit = installable_copy(src, tmp_path, name)
    proc = run_analyze("verify", str(unit))
    # verify also reports on unrelated system units; only lines about ours count.
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if name in line]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ours == []


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize(
    ("src", "name"), [(UNIT, "heliosd.service"), (TEMPLATE, "heliosd@main.service")]
)
def test_exposure_score_is_at_most_two(src: Path, tmp_path: Path, name: str) -> None:
    unit = installable_copy(src, tmp_path, name)
    proc = run_analyze("security", "--offline=true", "--no-pager", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    if match is None and "--offline" in proc.stderr:
        pytest.skip("this systemd-analyze has no --offline mode")
    assert match, proc.stdout + proc.stderr
    assert float(match[1]) <= MAX_EXPOSURE, proc.stdout
