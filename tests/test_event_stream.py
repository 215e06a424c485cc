"""GET /api/events as written (heliosd.control.app_sse): every event the backend's stream
yields reaches the reader in order, exactly once, whatever the timing; an event is written
without waiting for another; what is queued together goes out in few writes; a reader too
far behind gets everything up to an ``overflow`` event, then the end.

The reader here is a raw HTTP/1.1 client on the real Unix socket: the answer is chunked, one
chunk per write of the handler, so the number of writes is seen, not assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_control_api import MemoryBackend, no_unexpected_errors, serve, settings_for, sock_dir

import heliosd.control.app as app_module
from heliosd.control.app_sse import SSE_BATCH
from heliosd.control.server import ControlServer

__all__ = ["no_unexpected_errors", "sock_dir"]  # fixtures, used by name


class ChunkedReader:
    """The event stream, read chunk by chunk: ``chunks`` counts the handler's writes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.chunks = 0
        self.ended = False
        self._text = b""

    @classmethod
    async def open(cls, socket: Path) -> ChunkedReader:
        reader, writer = await asyncio.open_unix_connection(str(socket))
        writer.write(b"GET /api/events HTTP/1.1\r\nHost: heliosd\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower(), head
        self = cls(reader, writer)
        await self.frames_until(lambda frames: ": connected" in frames)
        return self

    async def _chunk(self) -> None:
        size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            self.ended = True
            return
        body = await self.reader.readexactly(size + 2)
        self.chunks += 1
        self._text += body[:-2]

    async def frames_until(self, done: Any, timeout: float = 10) -> list[str]:
        """Read chunks until ``done(frames)`` or the end; the complete frames so far."""

        async def read() -> None:
            while not self.ended and not done(self.frames()):
                await self._chunk()

        await asyncio.wait_for(read(), timeout)
        return self.frames()

    def frames(self) -> list[str]:
        complete = self._text.rpartition(b"\n\n")[0]
        return [f for f in complete.decode().split("\n\n") if f]

    def events(self) -> list[dict[str, Any]]:
        out = []
        for frame in self.frames():
            if frame.startswith(":"):
                continue  # connected, heartbeats
            kind, data = frame.split("\n")
            out.append(json.loads(data.removeprefix("data: ")) | {"_kind": kind[7:]})
        return out

    def close(self) -> None:
        self.writer.close()


def _seq(events: list[dict[str, Any]]) -> list[int]:
    return [e["n"] for e in events if e["_kind"] == "tick"]


@pytest.fixture
async def served_stream(sock_dir: Path) -> AsyncIterator[tuple[MemoryBackend, ControlServer, Path]]:
    backend = MemoryBackend()
    settings = settings_for(sock_dir)
    server, session = await serve(backend, settings)
    await session.close()  # the tests read through their own raw connection
    try:
        yield backend, server, settings.daemon.control_socket
    finally:
        await server.stop()


async def test_every_event_arrives_once_and_in_order_whatever_the_timing(
    served_stream: tuple[MemoryBackend, ControlServer, Path],
) -> None:
    """A randomized schedule (seed printed; HELIOSD_SEED replays one): bursts, single events
    and pauses, the reader reading all the while."""
    backend, _, socket = served_stream
    seed = int(os.environ.get("HELIOSD_SEED", random.randrange(2**32)))
    print(f"event-stream schedule seed {seed}")
    rng = random.Random(seed)
    reader = await ChunkedReader.open(socket)
    try:
        n = 0
        for _ in range(60):
            for _ in range(rng.choice([1, 1, 2, 5, 50, 700])):  # 700: past one write's batch
                backend.publish({"type": "tick", "n": n, "pad": "x" * rng.randrange(200)})
                n += 1
            await asyncio.sleep(rng.choice([0, 0, 0.001, 0.005, 0.02]))
        await reader.frames_until(lambda f: sum(x.startswith("event: tick") for x in f) >= n)
        assert _seq(reader.events()) == list(range(n)), f"seed {seed}"
    finally:
        reader.close()


async def test_an_event_is_written_without_waiting_for_another(
    served_stream: tuple[MemoryBackend, ControlServer, Path],
) -> None:
    backend, _, socket = served_stream
    reader = await ChunkedReader.open(socket)
    try:
        for n in range(3):  # each alone, after a pause
            await asyncio.sleep(0.03)
            backend.publish({"type": "tick", "n": n})
            await reader.frames_until(lambda f, n=n: f'"n":{n}' in f[-1], timeout=5)
        assert _seq(reader.events()) == [0, 1, 2]
    finally:
        reader.close()


async def test_what_is_queued_together_goes_out_in_few_writes(
    served_stream: tuple[MemoryBackend, ControlServer, Path],
) -> None:
    """2,000 events published at once (a group commit's fills) take one write per SSE_BATCH,
    not one each."""
    backend, _, socket = served_stream
    reader = await ChunkedReader.open(socket)
    try:
        before = reader.chunks
        for n in range(2000):
            backend.publish({"type": "tick", "n": n})
        await reader.frames_until(lambda f: '"n":1999' in f[-1])
        assert reader.chunks - before <= 2000 // SSE_BATCH + 2, reader.chunks - before
        assert _seq(reader.events()) == list(range(2000))
    finally:
        reader.close()


async def test_a_reader_too_far_behind_gets_what_was_queued_then_overflow_then_the_end(
    served_stream: tuple[MemoryBackend, ControlServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, _, socket = served_stream
    monkeypatch.setattr(app_module, "SSE_BACKLOG", 50)
    reader = await ChunkedReader.open(socket)
    try:
        # The reader reads nothing while 3,000 events of 1 KB fill the socket's buffers, the
        # response's and then the handler's queue.
        for n in range(3000):
            backend.publish({"type": "tick", "n": n, "pad": "x" * 1000})
            if n % 100 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        frames = await reader.frames_until(lambda f: False, timeout=20)  # to the end
        assert reader.ended
        events = reader.events()
        seq = _seq(events)
        assert seq == list(range(len(seq))) and 50 <= len(seq) < 3000
        assert events[-1]["_kind"] == "overflow" and events[-1]["type"] == "overflow"
        assert frames[-1].startswith("event: overflow")
        for _ in range(100):  # the stream's subscription is closed with it
            if not backend.subscribers:
                break
            await asyncio.sleep(0.02)
        assert backend.subscribers == []
    finally:
        with contextlib.suppress(Exception):
            reader.close()
