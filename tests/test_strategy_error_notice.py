"""A strategy the engine stops on an error is a ``strategy_error`` notification (automatic
trading is off until a person starts it again), delivered through Apprise to a real local
receiver by a real daemon whose strategy is a drop-in plugin file."""

from __future__ import annotations

from pathlib import Path

from heliosd.testing import NotifyReceiver, SimHandle, start_daemon, write_config

BOOM = """
from heliosd import hookimpl


class Boom:
    name = "boom"

    def on_market(self, snapshot, ctx):
        raise RuntimeError("model file missing")


@hookimpl
def heliosd_register_strategies(register, config):
    register(Boom())
"""


async def test_a_strategy_stopped_on_an_error_is_notified(
    sim: SimHandle, short_dir: Path, plugin_dir: Path, notify_receiver: NotifyReceiver
) -> None:
    (plugin_dir / "boom.py").write_text(BOOM)
    (plugin_dir / "boom.py").chmod(0o644)
    config = write_config(short_dir, sim, notify_url=notify_receiver.url("/hook"),
                          daemon_extra=f'plugin_dirs = ["{plugin_dir}"]',
                          extra='[engine]\nstrategy = "boom"\ninterval_s = 0.2\n')  # fmt: skip
    running = await start_daemon(config)
    try:
        status, answer = await running.request("POST", "/api/autonomous-engine/start", {})
        assert status == 200, answer
        posts = await notify_receiver.wait_for(
            lambda ps: any("Strategy boom" in str(p.json.get("title")) for p in ps), timeout=15
        )
        (post,) = [p for p in posts if "Strategy boom" in str(p.json.get("title"))]
        assert post.json["title"] == "Strategy boom stopped on an error (PAPER)"
        assert "model file missing" in post.json["message"]
        assert "heliosctl engine start" in post.json["message"]
        status, engine = await running.request("GET", "/api/autonomous-engine/status")
        assert status == 200 and engine["running"] is False, engine
    finally:
        await running.stop()
