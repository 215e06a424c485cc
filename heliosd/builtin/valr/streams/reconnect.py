"""The part both VALR streams share: the websockets reconnect loop with backoff and a
connect signed afresh per attempt, the JSON PING keep-alive, and decoding and dispatching
each message by ``type`` (what is skipped and why); :class:`StreamBroken` when the loop
stops on a programming error. The package docstring describes the whole flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import Any
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from heliosd.builtin.valr import parse
from heliosd.builtin.valr.retry import ValrTuning
from heliosd.core.errors import AuthError, HeliosError, TransientError
from heliosd.core.protocols import ExchangeEvents
from heliosd.core.retry import RetryPolicy, delays

log = logging.getLogger("heliosd.builtin.valr.streams")  # one logger for both streams
# The websockets library logs handshake headers (our API key and signature) and frame
# contents at DEBUG. Its logger is pinned to INFO so a debug log level never leaks them.
_ws_log = logging.getLogger("heliosd.builtin.valr.streams.websockets")
_ws_log.setLevel(logging.INFO)

Sign = Callable[[str, str], dict[str, str]]  # (verb, path) -> auth headers
Handler = Callable[[Any], Awaitable[None]]

PING = json.dumps({"type": "PING"})
# Every frame is decoded with msgspec: 1.2-1.9 us for a 360-470 byte account message against
# 4.9-5.2 us with json (three messages per fill; bench/fills.py). Same dicts, lists, str,
# int (any size), float; it refuses NaN/Infinity, which json would accept: such a message
# is skipped as unreadable. Its DecodeError is a ValueError.
_decode = msgspec.json.Decoder().decode
_PARSE_ERRORS = (parse.ParseError, AttributeError, TypeError, KeyError, IndexError)


# Not a network failure but a programming error (ours, or an API of a library we call the
# wrong way: websockets older than 17.1 raise TypeError for reconnect_delays=): retrying it
# would log the same failure forever while the stream stays down. The stream stops instead,
# loudly (CRITICAL, with the traceback), and every order that needs it is refused at once
# with the reason (StreamBroken), until the daemon is restarted on fixed code.
PROGRAMMING_ERRORS: tuple[type[Exception], ...] = (
    TypeError, AttributeError, NameError, ImportError, AssertionError,
)  # fmt: skip


class StreamBroken(TransientError):
    """The stream stopped on a programming error; it will not reconnect by itself."""

    code = "stream_broken"


class _Reconnect(Exception):
    """End this connection and let the loop open a new one (``detail`` says why)."""


class _SignedConnect(connect):
    """``connect`` that signs the upgrade request anew on every (re)connection attempt."""

    def __init__(self, uri: str, *, sign: Sign | None, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self._sign = sign
        self._path = urlsplit(uri).path

    async def connect(self) -> ClientConnection:
        if self._sign is not None:
            self.additional_headers = self._sign("GET", self._path)
        return await super().connect()


def _backoff(tuning: ValrTuning) -> Callable[[], Iterator[float]]:
    """Reconnect delays: the shared retry policy (heliosd.core.retry), from the tuning's
    bounds."""
    policy = RetryPolicy(
        base_delay_s=tuning.reconnect_initial_s, max_delay_s=tuning.reconnect_max_s
    )
    return lambda: delays(policy)


class _Stream:
    """Reconnect loop, keep-alive and message dispatch shared by both streams."""

    name = "stream"
    # Wait for AUTHENTICATED (or a first message) after a signed connect: account only.
    waits_for_auth = False
    # Types VALR documents that this client does not act on: dropped without a warning.
    ignored: Collection[str] = frozenset({"AUTHENTICATED", "PONG", "SUBSCRIBED", "UNSUBSCRIBED"})

    def __init__(
        self, url: str, events: ExchangeEvents, tuning: ValrTuning, *, sign: Sign | None
    ) -> None:
        self._url = url
        self._events = events
        self._tuning = tuning
        self._sign = sign
        self._task: asyncio.Task[None] | None = None
        self._up = False
        # Why the last connection attempt failed, when it was the credentials.
        self.last_error: HeliosError | None = None
        self.broken: StreamBroken | None = None  # stopped on a programming error: see above
        self._last_pong = 0.0
        self._quiet = False  # not reading (reconciling): do not judge missing PONGs
        self._handlers: dict[str, Handler] = {}
        self.connections = 0  # sessions opened so far (for health views and tests)
        # time.monotonic() of the last message of any kind (PONGs too): how fresh the socket
        # is, for `heliosctl doctor`; None before the first.
        self.last_message_at: float | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"valr-{self.name}-stream"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._went_down("client closed")

    @property
    def up(self) -> bool:
        return self._up

    # ------------------------------------------------------------------ the loop

    def _process_exception(self, exc: Exception) -> Exception | None:
        """Every connection failure is retried with backoff; refusals are worth a warning.
        A programming error is raised, not retried (PROGRAMMING_ERRORS)."""
        if isinstance(exc, PROGRAMMING_ERRORS):
            return exc
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            log.warning(
                "VALR %s stream: handshake refused with HTTP %d; retrying with backoff",
                self.name,
                status,
            )
            if status in (401, 403):
                self.last_error = AuthError(
                    f"VALR refused the {self.name} stream's credentials (HTTP {status})"
                )
        else:
            log.info("VALR %s stream: connect failed (%s)", self.name, type(exc).__name__)
        return None

    async def _run(self) -> None:
        delays = _backoff(self._tuning)()
        while True:
            try:
                async for ws in _SignedConnect(
                    self._url,
                    sign=self._sign,
                    ping_interval=None,  # VALR wants its own JSON PING message
                    process_exception=self._process_exception,
                    reconnect_delays=_backoff(self._tuning),
                    open_timeout=self._tuning.auth_timeout_s,
                    close_timeout=2,
                    max_size=2**22,
                    logger=_ws_log,
                ):
                    detail, failed = "connection closed by VALR", False
                    try:
                        await self._session(ws)
                    except ConnectionClosed as exc:
                        code = exc.rcvd.code if exc.rcvd is not None else "none"
                        detail = f"connection closed (code {code})"
                    except _Reconnect as exc:
                        detail, failed = str(exc), True
                    except HeliosError as exc:
                        detail, failed = f"reconciliation failed: {exc.message}", True
                        log.warning("VALR %s stream: %s", self.name, detail)
                    except Exception:
                        detail, failed = "event handling failed", True
                        log.exception(
                            "VALR %s stream: event handling failed; reconnecting to reconcile",
                            self.name,
                        )
                    await self._went_down(detail)
                    if failed:
                        await asyncio.sleep(next(delays))
                    else:
                        delays = _backoff(self._tuning)()
            except asyncio.CancelledError:
                raise
            except PROGRAMMING_ERRORS as exc:
                self.broken = StreamBroken(
                    f"the VALR {self.name} stream stopped: {type(exc).__name__}: {exc} (a"
                    " programming error, not a network failure: not retried; restart heliosd"
                    " once it is fixed)"
                )
                log.critical("VALR %s stream: %s", self.name, self.broken.message, exc_info=exc)
                await self._went_down(f"stream broken ({type(exc).__name__})")
                return
            except Exception:  # a bug in this loop: report it, never stop streaming
                log.exception("VALR %s stream loop failed; restarting", self.name)
                await self._went_down("stream loop failed")
                await asyncio.sleep(next(delays))

    async def _session(self, ws: ClientConnection) -> None:
        self.connections += 1
        self._last_pong = asyncio.get_running_loop().time()
        pinger = asyncio.get_running_loop().create_task(self._keepalive(ws))
        try:
            if self._sign is not None and self.waits_for_auth:
                await self._await_authenticated(ws)
            detail = await self._on_open(ws)
            self._up, self.last_error = True, None
            await self._events.on_connection(self.name, True, detail)
            async for raw in ws:
                await self._handle(raw)
        finally:
            pinger.cancel()

    async def _await_authenticated(self, ws: ClientConnection) -> None:
        """Until VALR's AUTHENTICATED, or its first other message (on ``/ws/account`` the
        balance and open-order snapshot VALR pushes on connect [VALR's API reference,
        one source]: only an authenticated socket gets it), handled in order; or, after
        ``auth_timeout_s`` of silence, carry on with a warning. Nothing here is trusted
        with the credentials: the signed upgrade was accepted, and the REST reconciliation
        that follows fails with an AuthError if VALR refuses them. A socket closed first
        reconnects."""
        try:
            async with asyncio.timeout(self._tuning.auth_timeout_s):
                async for raw in ws:
                    if _type_of(raw) == "AUTHENTICATED":
                        return
                    await self._handle(raw)
                    return
        except TimeoutError:
            log.warning(
                "VALR %s stream: no AUTHENTICATED nor any message %.1f s after connecting;"
                " carrying on (VALR accepted the signed connection)",
                self.name,
                self._tuning.auth_timeout_s,
            )
            return
        raise _Reconnect("closed before AUTHENTICATED")

    async def _on_open(self, ws: ClientConnection) -> str:
        """Per-stream work after authentication; returns the on_connection detail."""
        raise NotImplementedError

    async def _keepalive(self, ws: ClientConnection) -> None:
        interval = self._tuning.ping_interval_s
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(interval)
                if self._quiet:
                    self._last_pong = loop.time()
                elif loop.time() - self._last_pong > 2 * interval:
                    log.warning(
                        "VALR %s stream: no PONG for %.1f s; reconnecting",
                        self.name,
                        loop.time() - self._last_pong,
                    )
                    ws.transport.abort()
                    return
                await ws.send(PING)
        except ConnectionClosed:
            return

    async def _went_down(self, detail: str) -> None:
        if not self._up:
            return
        self._up = False
        self._on_down()
        try:
            await self._events.on_connection(self.name, False, detail)
        except Exception:
            log.exception("VALR %s stream: on_connection failed", self.name)

    def _on_down(self) -> None:
        """Per-stream state to clear when the connection is lost."""

    # ------------------------------------------------------------------ messages

    async def _handle(self, raw: str | bytes) -> None:
        """Decode once, dispatch by ``type``; anything unreadable is skipped with a warning."""
        self.last_message_at = time.monotonic()
        try:
            msg = _decode(raw)
            kind = msg["type"]
        except (ValueError, TypeError, KeyError):
            log.warning("VALR %s stream: skipped an unreadable message", self.name)
            self._lost_message()
            return
        if not isinstance(kind, str):
            log.warning("VALR %s stream: skipped a message without a type", self.name)
            self._lost_message()
            return
        handler = self._handlers.get(kind)
        if handler is not None:
            await handler(msg)
        elif kind == "PONG":
            self._last_pong = asyncio.get_running_loop().time()
        elif kind not in self.ignored:
            log.warning("VALR %s stream: skipped a message of unknown type %.40r", self.name, kind)
            self._lost_message()

    def _skip(self, kind: str, exc: BaseException) -> None:
        log.warning("VALR %s stream: skipped a %s message (%s)", self.name, kind, exc)
        self._lost_message()

    def _lost_message(self) -> None:
        """A skipped message may have carried something that matters; see subclasses."""


def _type_of(raw: str | bytes) -> Any:
    try:
        msg = _decode(raw)
    except ValueError:
        return None
    return msg.get("type") if isinstance(msg, dict) else None
