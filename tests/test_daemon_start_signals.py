"""Signals while ``heliosd run`` is still starting, through a real process.

A drop-in registers a paper venue whose ``start()`` never returns (a venue that hangs on
connect). The first SIGTERM waits for the start (an orderly shutdown follows it); a second
one cuts the start short: the process exits promptly, with exit 1 and a line saying so, the
store closed (the database opens cleanly afterwards), and not killed by the signal."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from heliosd.testing import SimHandle, config_text

PLUGIN = textwrap.dedent(
    """
    import asyncio
    from pathlib import Path

    from heliosd import hookimpl
    from heliosd.builtin.paper import PaperExchange

    STARTING = Path(__file__).with_suffix(".starting")


    class HangingPaper(PaperExchange):
        name = "hanging"

        async def start(self, events):
            STARTING.write_text("yes")
            await asyncio.Event().wait()


    @hookimpl
    def heliosd_register_exchanges(register, config):
        register("hanging", HangingPaper.from_context)
    """
)


def config_with_hanging_venue(directory: Path, sim: SimHandle) -> Path:
    plugins = directory / "plugins"
    plugins.mkdir(mode=0o755)
    (plugins / "hang.py").write_text(PLUGIN)
    (plugins / "hang.py").chmod(0o644)
    config = directory / "heliosd.toml"
    config.write_text(config_text(
        directory / "state", sim=sim, daemon_extra=f'plugin_dirs = ["{plugins}"]',
        extra='[exchange]\npaper = "hanging"\n',
    ))  # fmt: skip
    return config


async def test_a_second_signal_cuts_a_hanging_start_short_and_closes_the_store(
    sim: SimHandle, short_dir: Path
) -> None:
    config = config_with_hanging_venue(short_dir, sim)
    proc = subprocess.Popen(
        [sys.executable, "-m", "heliosd.runtime.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        marker = short_dir / "plugins" / "hang.starting"
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the venue's start never began"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert proc.poll() is None  # the first waits for the start, which hangs
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 20)
        assert time.monotonic() - started < 10
        _, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 1, err
    assert "cutting the start short" in err and "stopped during startup" in err, err
    assert "Traceback" not in err, err
    db = short_dir / "state" / "heliosd.db"
    with sqlite3.connect(db) as conn:  # closed cleanly: opens, intact
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
