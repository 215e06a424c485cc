"""Test helpers for heliosd and its plugins: no pytest needed to import them (benchmarks use
them too); the fixtures are opt-in, in :mod:`heliosd.testing.plugin`.

Everything here is real: the VALR simulator on loopback, a SQLite file, the daemon's own
control socket, and (``heliosd_process``) a separate ``heliosd run`` process that tests can
SIGTERM and ``kill -9``.

This module holds the simulator, a test config and the seed of a randomized search; polling
is :mod:`heliosd.testing.waiting`, the daemon under test :mod:`heliosd.testing.daemon`, the
notification receiver :mod:`heliosd.testing.notify`. Every helper is importable from here.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heliosd.testing.daemon import (
    DaemonProcess,
    Request,
    RunningDaemon,
    go_live,
    request_as,
    start_daemon,
)
from heliosd.testing.notify import NotifyReceiver, ReceivedPost
from heliosd.testing.waiting import eventually, wait_for

if TYPE_CHECKING:
    import pytest

SIM_ACCOUNT = "0"


@dataclass
class SimHandle:
    """A started simulator plus the credentials of its main (trade-only) key."""

    sim: Any
    key: str
    secret: str
    account: str = SIM_ACCOUNT
    extra_keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add_key(
        self, name: str, permissions: tuple[str, ...], account: str | None = None
    ) -> tuple[str, str]:
        key, secret = secrets.token_hex(32), secrets.token_hex(32)
        self.sim.add_api_key(
            key, secret, permissions=permissions, account_id=account or self.account, label=name
        )
        self.extra_keys[name] = (key, secret)
        return key, secret


async def start_sim(
    *,
    funded: Decimal | None = Decimal(100000),
    price_interval_s: float | None = None,
    seed: int = 1,
) -> SimHandle:
    from heliosd.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(seed=seed, price_interval_s=price_interval_s))
    await sim.start(host="127.0.0.1", port=0)
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    sim.add_account(SIM_ACCOUNT)
    sim.add_api_key(key, secret, permissions=("View access", "Trade"), account_id=SIM_ACCOUNT)
    if funded:
        sim.fund(SIM_ACCOUNT, "ZAR", funded)
    return SimHandle(sim, key, secret)


def config_text(
    state_dir: Path,
    *,
    sim: SimHandle | None = None,
    key_file: Path | None = None,
    secret_file: Path | None = None,
    notify_url: str | None = None,
    extra: str = "",
    daemon_extra: str = "",
    risk_extra: str = "",
    valr_extra: str = "",
) -> str:
    """A heliosd.toml for tests: credentials by $file, everything else explicit.

    ``daemon_extra`` / ``risk_extra`` / ``valr_extra`` add lines to ``[daemon]`` /
    ``[risk]`` / ``[valr]`` (e.g. ``plugin_dirs = [...]``); ``extra`` appends whole sections.
    """
    lines = [
        "[daemon]",
        f'state_dir = "{state_dir}"',
        f'control_socket = "{state_dir / "heliosd.sock"}"',
        'log_level = "info"',
        "shutdown_timeout_s = 10",
        daemon_extra,
        "",
        "[valr]",
    ]
    if sim is not None:
        lines += [f'rest_url = "{sim.sim.rest_url}"', f'ws_url = "{sim.sim.ws_url}"']
    if key_file is not None and secret_file is not None:
        lines += [f'api_key = {{ "$file" = "{key_file}" }}',
                  f'api_secret = {{ "$file" = "{secret_file}" }}']  # fmt: skip
    lines += ["request_timeout_s = 5", valr_extra, ""]
    lines += ["[risk]", "gate_timeout_s = 5", risk_extra, ""]
    if notify_url:
        lines += ["[notify]", f'urls = ["{notify_url}"]', ""]
    return "\n".join(lines) + "\n" + extra


def write_config(directory: Path, sim: SimHandle | None, **kwargs: Any) -> Path:
    """Write credentials (0600) and a config into ``directory``; return the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    key_file = secret_file = None
    if sim is not None:
        key_file, secret_file = directory / "valr_api_key", directory / "valr_api_secret"
        key_file.write_text(sim.key)
        secret_file.write_text(sim.secret)
        key_file.chmod(0o600)
        secret_file.chmod(0o600)
    path = directory / "heliosd.toml"
    path.write_text(config_text(directory / "state", sim=sim, key_file=key_file,
                                secret_file=secret_file, **kwargs))  # fmt: skip
    return path


# ------------------------------------------------------------------------- seeded searches


SEED_ENV = "HELIOSD_SEED"


def search_seed(config: pytest.Config, default: int) -> int:
    """The seed a randomized search runs with: ``--seed``, else ``$HELIOSD_SEED``, else
    ``default`` (fixed, so CI runs one known sequence and a failure reproduces)."""
    option = config.getoption("--seed", default=None)
    if option is not None:
        return int(option)
    env = os.environ.get(SEED_ENV, "").strip()
    return int(env) if env else default


__all__ = [
    "SEED_ENV",
    "SIM_ACCOUNT",
    "DaemonProcess",
    "NotifyReceiver",
    "ReceivedPost",
    "Request",
    "RunningDaemon",
    "SimHandle",
    "config_text",
    "eventually",
    "go_live",
    "request_as",
    "search_seed",
    "start_daemon",
    "start_sim",
    "wait_for",
    "write_config",
]
