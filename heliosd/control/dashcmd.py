"""``heliosctl dashboard``: a one-time login URL for the web dashboard, and the bridge to it.

Asks the daemon (over the socket, as the caller) for a one-time login token, opens the
loopback bridge (:mod:`heliosd.control.bridge`) and prints the URL; runs until Ctrl-C or
SIGTERM. The token works once and for a few minutes; the session it becomes is the
caller's, named ``dashboard session <id> via <user>`` in the audit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from heliosd.control.bridge import BRIDGE_HOST, Bridge

if TYPE_CHECKING:
    from heliosd.control.ctl import Ctl


def dashboard(ctl: Ctl) -> int:
    status, body = ctl.call("POST", "/api/dashboard/login", {})
    if status != 200 or not isinstance(body, dict) or "token" not in body:
        return ctl.finish(status, body)
    return asyncio.run(_serve(ctl, str(ctl.args.socket), int(ctl.args.port), body))


async def _serve(ctl: Ctl, socket_path: str, port: int, login: dict[str, object]) -> int:
    bridge = Bridge(socket_path, port)
    try:
        bound = await bridge.start()
    except OSError as exc:  # the port is taken, most likely
        await bridge.stop()
        ctl.err(f"heliosctl: cannot listen on {BRIDGE_HOST}:{port}: {exc.strerror or exc}")
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = f"http://{BRIDGE_HOST}:{bound}{login.get('path', '/dashboard/login')}"
    ctl.out(f"heliosd dashboard on http://{BRIDGE_HOST}:{bound}/dashboard/ (loopback only)")
    ctl.out(f"open (works once, within {login.get('expires_in')} s): {url}?token={login['token']}")
    ctl.out("Ctrl-C to stop the bridge")
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await bridge.stop()
    return 0
