"""Issue 8 item 9: who may talk to the daemon, where secrets may not go, which code may load.

* ``daemon.allowed_uids``: another user who can open the socket file (same group) is still
  refused (403, JSON) by SO_PEERCRED, and the refused request has no effect.
* Secrets: a real ``heliosd run`` with a known API key and secret, TCP bearer token and
  Apprise URL token trades, switches modes, fails notifications, meets wrong tokens and a
  revoked secret; none of those values appears in its log (tracebacks included), in any API
  answer, or in the bytes of the database, its WAL and its backups.
* Drop-in plugins that are group- or world-writable are refused: exit 78 naming the file.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from heliosd.testing import (
    DaemonProcess,
    SimHandle,
    go_live,
    request_as,
    start_daemon,
    write_config,
)

from .conftest import NOTIFY, wait_until

NOBODY = 65534


def _insert_daemon_keys(config: Path, lines: str) -> None:
    text = config.read_text()
    config.write_text(text.replace("[daemon]\n", "[daemon]\n" + lines, 1))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
async def test_allowed_uids_refuse_a_user_the_socket_mode_lets_in(
    sim: SimHandle, short_dir: Path
) -> None:
    # The socket's directory and file are open to group 0; the other user is in it, so only
    # allowed_uids stands between them and the daemon.
    sock_dir = Path(tempfile.mkdtemp(prefix="hd-sock-", dir="/tmp"))
    try:
        sock_dir.chmod(0o750)
        config = write_config(short_dir, sim, notify_url=NOTIFY)
        text = config.read_text().replace(
            f'control_socket = "{short_dir / "state" / "heliosd.sock"}"',
            f'control_socket = "{sock_dir / "heliosd.sock"}"',
        )
        config.write_text(text)
        _insert_daemon_keys(config, 'allowed_uids = [4242]\nsocket_mode = "0660"\n')
        running = await start_daemon(config)
        try:
            stop = (b"POST /api/trading/emergency-stop HTTP/1.1\r\nHost: h\r\n"
                    b"Connection: close\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}")  # fmt: skip
            answer = await asyncio.to_thread(
                request_as, NOBODY, 0, str(sock_dir / "heliosd.sock"), stop
            )
            assert answer.startswith(b"HTTP/1.1 403"), answer
            assert b"application/json" in answer and b'"error":"forbidden"' in answer, answer
            status, body = await running.request("GET", "/api/trading/mode")  # root is served
            assert status == 200 and body["halted"] is False, body  # the refused stop did nothing
        finally:
            await running.stop()
    finally:
        import shutil

        shutil.rmtree(sock_dir, ignore_errors=True)


# ---------------------------------------------------------------- secrets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tcp(port: int, method: str, path: str, token: str | None, body: bytes | None = None) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return f"{resp.status} {dict(resp.getheaders())}".encode() + resp.read()
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_secrets_never_reach_logs_answers_or_the_database(
    sim: SimHandle, short_dir: Path, heliosd_process: Callable[[Path], DaemonProcess]
) -> None:
    token = "tok" + secrets.token_hex(24)
    notify_secret = "ntf" + secrets.token_hex(16)
    port = _free_port()
    config = write_config(
        short_dir, sim, notify_url=f"json://heliosd:{notify_secret}@127.0.0.1:9/hook"
    )
    _insert_daemon_keys(config, f'http_listen = "127.0.0.1:{port}"\nhttp_token = "{token}"\n')
    known = {"api key": sim.key, "api secret": sim.secret, "http token": token,
             "notify token": notify_secret}  # fmt: skip
    proc = heliosd_process(config)
    answers: list[Any] = []

    async def req(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, answer = await proc.arequest(method, path, body)
        answers.append(answer)
        return status, answer

    def order(side: str, qty: str) -> dict[str, str]:
        return {"pair": "BTCZAR", "side": side, "type": "MARKET", "quantity": qty, "reason": "s"}

    await proc.astart()
    try:
        await wait_until(lambda: _streams_up(req), 15, "streams up")
        await go_live(req)
        assert (await req("POST", "/api/orders", order("BUY", "0.002")))[0] == 201
        assert (await req("POST", "/api/orders", order("BUY", "1.5")))[0] == 422  # risk cap
        for path in ("/api/orders", "/api/positions", "/api/pnl", "/api/risk", "/api/plugins",
                     "/api/health", "/api/audit", "/api/trading/mode/history"):  # fmt: skip
            await req("GET", path)
        await req("POST", "/api/backup", {})
        for bearer in (token, "wrong" + token[5:], None):
            answers.append(await asyncio.to_thread(_tcp, port, "GET", "/api/trading/mode", bearer))
        # The venue stops accepting our signature: REST and the stream fail on credentials.
        sim.sim.add_api_key(sim.key, secrets.token_hex(32), account_id=sim.account)
        sim.sim.drop_ws_connections()
        status, body = await req("POST", "/api/orders", order("SELL", "0.001"))
        assert status in (502, 503), body
        await req("POST", "/api/trading/mode", {"mode": "PAPER", "reason": "done"})
        await req("POST", "/api/trading/mode", {"mode": "LIVE", "reason": "again"})  # gates fail
        await asyncio.sleep(1.5)  # let failed notifications and reconnects log
        await req("POST", "/api/trading/emergency-stop", {"reason": "scan"})
    finally:
        assert await proc.aterminate() == 0

    state = config.parent / "state"
    places: dict[str, bytes] = {"answers": repr(answers).encode()}
    assert proc.log_path is not None
    places["log"] = proc.log_path.read_bytes()
    for path in sorted(state.rglob("*")):
        if path.is_file() and not path.is_socket():
            places[str(path.relative_to(state))] = path.read_bytes()
    assert "heliosd.db" in places and any(p.startswith("backups/") for p in places), places.keys()
    assert b"exchange_auth" in places["answers"] or b"exchange_unavailable" in places["answers"]
    assert b"401" in places["answers"]  # the wrong bearer tokens were refused
    assert b"notification" in places["log"]  # delivery to the Apprise URL failed and was logged
    leaks = [f"{what} in {where}" for where, data in places.items()
             for what, value in known.items() if value.encode() in data]  # fmt: skip
    assert not leaks, leaks
    assert b"Traceback" not in places["log"]


async def _streams_up(req: Callable[..., Any]) -> bool:
    _, body = await req("GET", "/api/health")
    streams = body.get("streams", {}) if isinstance(body, dict) else {}
    return all(streams.get(s, {}).get("up") for s in ("live.account", "live.trade"))


# ---------------------------------------------------------------- drop-in permissions

PLUGIN = '''"""A drop-in that registers nothing (its permissions are what is tested)."""
'''


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_unsafe_drop_in_plugins_are_refused_with_exit_78(short_dir: Path) -> None:
    async def run(mode: int) -> tuple[int, str, Path]:
        plugin_dir = short_dir / f"plugins-{mode:o}"
        plugin_dir.mkdir(mode=0o755)
        plugin = plugin_dir / f"unsafe_{mode:o}.py"
        plugin.write_text(PLUGIN)
        plugin.chmod(mode)
        state = short_dir / f"state-{mode:o}"
        config = short_dir / f"heliosd-{mode:o}.toml"
        config.write_text(
            f'[daemon]\nstate_dir = "{state}"\ncontrol_socket = "{state}/h.sock"\n'
            f'plugin_dirs = ["{plugin_dir}"]\n'
            '[valr]\nrest_url = "http://127.0.0.1:9"\nws_url = "ws://127.0.0.1:9"\n'
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "heliosd.runtime.cli", "run", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return -1, "still running after 30 s", plugin
        return proc.returncode or 0, err.decode(errors="replace"), plugin

    results = await asyncio.gather(run(0o666), run(0o664), run(0o620), run(0o646))
    for code, err, plugin in results:
        assert code == 78, (plugin, err[-500:])
        assert str(plugin) in err and "writable" in err, err[-500:]
        assert "Traceback" not in err
        assert not (plugin.parent.parent / f"state-{plugin.stat().st_mode & 0o777:o}"
                    / "heliosd.db").exists()  # fmt: skip


async def test_a_safe_drop_in_is_loaded(short_dir: Path) -> None:
    """The refusals above are about permissions: the same file, 0644, loads (check-config)."""
    plugin_dir = short_dir / "plugins"
    plugin_dir.mkdir(mode=0o755)
    (plugin_dir / "safe.py").write_text(PLUGIN)
    (plugin_dir / "safe.py").chmod(0o644)
    config = short_dir / "heliosd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{short_dir}/s"\nplugin_dirs = ["{plugin_dir}"]\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heliosd.runtime.cli", "check-config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    assert b"ok" in out, out.decode()
