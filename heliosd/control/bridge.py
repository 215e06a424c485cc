"""``heliosctl dashboard``'s bridge: a loopback-only HTTP listener that relays to the socket.

A browser cannot open a Unix socket. The bridge listens on 127.0.0.1 only (a random port
unless one is given), relays every request to the control socket with
:data:`~heliosd.control.dashboard.BRIDGE_HEADER` added, and streams the answer back (server-
sent events included). The bridge itself grants nothing: the daemon sees the header and
serves the request only with a dashboard session, so another local user who finds the port
gets a 401 page, and a POST without the CSRF header a 403.
"""

from __future__ import annotations

from typing import Final

import aiohttp
from aiohttp import web

from heliosd.control.dashboard import BRIDGE_HEADER

BRIDGE_HOST: Final = "127.0.0.1"
# The control API's body limit, with room for the request line and headers.
MAX_BODY_BYTES: Final = 128 * 1024
# How long a stop waits for relays still running (open event streams) before cancelling them.
STOP_GRACE_S = 1.0

_HOP_BY_HOP: Final = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length",
))  # fmt: skip


class Bridge:
    """Relay ``127.0.0.1:port`` to the control socket at ``socket_path``."""

    def __init__(self, socket_path: str, port: int = 0) -> None:
        self.socket_path = socket_path
        self.port = port
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    async def start(self) -> int:
        """Listen; returns the bound port."""
        self._client = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self.socket_path),
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=None),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        # A browser that leaves cancels its relay at once (an open event stream would
        # otherwise hold its upstream connection until the next event or heartbeat). Safe
        # here, unlike in the daemon: cancelling a relay only closes its connection to the
        # daemon, whose own handler still runs to its end.
        # On stop, a relay still running is an open page's event stream: aiohttp would wait
        # up to its 60 s default for it to end by itself (heliosctl dashboard took ~15 s and
        # more to stop on SIGTERM); one second, then they are cancelled.
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, handler_cancellation=True,
            shutdown_timeout=STOP_GRACE_S,
        )  # fmt: skip
        await self._runner.setup()
        site = web.TCPSite(self._runner, BRIDGE_HOST, self.port)
        await site.start()
        for addr in self._runner.addresses:
            if isinstance(addr, tuple) and len(addr) >= 2:
                self.port = int(addr[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        # The browser cannot set or suppress this: the bridge always adds it.
        headers.pop(BRIDGE_HEADER, None)
        headers[BRIDGE_HEADER] = "1"
        body = await request.read()
        try:
            upstream = await self._client.request(
                request.method,
                f"http://heliosd{request.rel_url}",
                headers=headers,
                data=body or None,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError) as exc:
            return web.Response(
                status=502, text=f"heliosctl dashboard: cannot reach the daemon: {exc}\n"
            )
        try:
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    resp.headers.add(key, value)
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
        except aiohttp.ClientError:
            pass  # the daemon ended the answer (it stopped): the browser sees the stream end
        finally:
            upstream.release()
        return resp
