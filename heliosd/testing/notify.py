"""The notification receiver: :class:`NotifyReceiver`, a real HTTP endpoint for Apprise's
``json://`` URLs that records every POST (:class:`ReceivedPost`) and can fail or stall on
request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

# ------------------------------------------------------------------------- notification receiver


@dataclass(frozen=True)
class ReceivedPost:
    """One POST as :class:`NotifyReceiver` saw it.

    ``json`` is the parsed body (``None`` when the body is not JSON); ``status`` is what the
    receiver answered, or ``None`` for a stalled request (its sender gave up waiting).
    """

    path: str
    headers: Mapping[str, str]  # case-insensitive (a copy of aiohttp's CIMultiDictProxy)
    body: bytes
    json: Any
    status: int | None

    @property
    def auth(self) -> str | None:
        """The ``Authorization`` header (a json:// URL's ``user:password`` arrives as Basic)."""
        return self.headers.get("Authorization")

    @property
    def accepted(self) -> bool:
        return self.status == 200


class NotifyReceiver:
    """A real HTTP endpoint for Apprise's ``json://`` schema on 127.0.0.1 (aiohttp).

    Every POST, to any path, is recorded in ``received`` (path, headers, raw and parsed body,
    the status answered); ``posts`` are the accepted ones (answered 200), ``hits`` counts all.
    A body that is not JSON is answered 400 (the sender must not think it delivered).

    Failure modes, for the outbox's retries and Apprise's timeouts:

    * ``fail(times, status=500)``: answer the next ``times`` POSTs (every one when ``None``)
      with ``status``;
    * ``stall(times)``: hold the next ``times`` POSTs unanswered (every one when ``None``),
      so the sender times out; they are answered 503 only when ``recover()`` or ``stop()``
      releases them, and never count as accepted;
    * ``recover()``: accept again, releasing stalled requests.

    ``stop()`` then ``start()`` rebinds the same port, so a test can show "receiver down"
    (connection refused) and "back up" at the URL already in the daemon's config. The
    access log is off: a URL's path may carry a token, even in tests.
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.received: list[ReceivedPost] = []
        self._mode = "ok"  # "ok" | "fail" | "stall"
        self._left: int | None = None  # POSTs the mode still applies to; None = all
        self._fail_status = 500
        self._release = asyncio.Event()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    # -- lifecycle

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self._release.is_set():  # set by the last stop(): a stall mode must hold again
            self._release = asyncio.Event()

    async def stop(self) -> None:
        self._release.set()  # stalled handlers answer now instead of holding up cleanup
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> NotifyReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what goes in the config

    def url(
        self, path: str = "/hook", *, user: str | None = None, password: str | None = None
    ) -> str:
        """The Apprise URL ``json://[user[:password]@]127.0.0.1:<port><path>``."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        if self.port == 0:
            raise RuntimeError("start() the receiver first: its port is not known yet")
        credentials = ""
        if user is not None:
            credentials = f"{user}:{password}@" if password is not None else f"{user}@"
        return f"json://{credentials}127.0.0.1:{self.port}{path}"

    # -- failure modes

    def fail(self, times: int | None = None, *, status: int = 500) -> None:
        self._set_mode("fail", times)
        self._fail_status = status

    def stall(self, times: int | None = None) -> None:
        self._set_mode("stall", times)
        if self._release.is_set():  # released by recover()/stop(): hold again from now
            self._release = asyncio.Event()

    def recover(self) -> None:
        self._set_mode("ok", None)
        self._release.set()

    def _set_mode(self, mode: str, times: int | None) -> None:
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for every POST): {times}")
        self._mode, self._left = mode, times

    def _next_action(self) -> str:
        mode = self._mode
        if self._left is not None:
            self._left -= 1
            if self._left == 0:
                self._mode, self._left = "ok", None
        return mode

    # -- what arrived

    @property
    def posts(self) -> list[ReceivedPost]:
        return [p for p in self.received if p.accepted]

    @property
    def hits(self) -> int:
        return len(self.received)

    def titles(self) -> list[Any]:
        """The ``title`` of every accepted post, in arrival order."""
        return [p.json.get("title") if isinstance(p.json, dict) else None for p in self.posts]

    async def wait_for(
        self, what: int | Callable[[list[ReceivedPost]], bool], timeout: float = 10.0
    ) -> list[ReceivedPost]:
        """Wait until ``what`` accepted posts arrived (at least), or ``what(posts)`` is true;
        return the accepted posts. AssertionError, showing what did arrive, after ``timeout``."""

        def met() -> bool:
            posts = self.posts
            return len(posts) >= what if isinstance(what, int) else what(posts)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(met), timeout)
            except TimeoutError:
                seen = repr([p.json for p in self.posts])[:2000]
                raise AssertionError(
                    f"notification receiver: condition not met in {timeout} s "
                    f"({len(self.posts)} accepted of {self.hits} POSTs: {seen})"
                ) from None
        return self.posts

    async def _handle(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from multidict import CIMultiDict, CIMultiDictProxy

        body = await request.read()
        try:
            parsed: Any = json.loads(body)
            is_json = True
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            parsed, is_json = None, False
        action = self._next_action()
        release = self._release
        status: int | None
        if action == "stall":
            status = None
        elif action == "fail":
            status = self._fail_status
        else:
            status = 200 if is_json else 400
        headers = CIMultiDictProxy(CIMultiDict(request.headers))
        async with self._changed:
            self.received.append(ReceivedPost(request.path, headers, body, parsed, status))
            self._changed.notify_all()
        if status is None:
            await release.wait()
            return web.Response(status=503, text="stalled")
        return web.Response(status=status, text="ok" if status == 200 else "refused")
