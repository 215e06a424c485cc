"""One daemon per state directory: an exclusive lock on ``<state_dir>/heliosd.lock``.

Invariant: at most one process runs heliosd (``heliosd run`` or ``heliosd demo``) on a state
directory at a time, and it holds the lock from before its store opens until it exits. A
second one finds the lock taken and stops before it opens the store, starts an exchange
client, the engine or the control socket: it writes nothing, places nothing, and exits
with :data:`EXIT_LOCKED` after one line naming the pid that holds the lock.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on an open file: the kernel drops it when the
holder exits however it exits (``kill -9``, power loss), so a stale lock cannot outlive its
process, and nothing has to be cleaned up after a crash. The file itself stays (removing
it would race with a starter that has it open); its content is only the holder's pid, for
the message, never what decides. ``flock`` locks are per open file description and the
descriptor is not inherited by child processes (Python's default), so the lock is exactly
the daemon's lifetime. The state directory must be on a local file system (``flock`` over
NFS is not reliable).

Commands that only read the store (``heliosd backup``: a read-only connection and SQLite's
online backup, consistent beside the running writer) and commands that never open it
(``check-config``, ``sim``) do not take the lock, so they work beside a running daemon.
Anything that writes the store must hold the lock: the daemon, or ``heliosd restore``
(:mod:`heliosd.runtime.backup_restore`), which is therefore refused while a daemon runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from heliosd.core.errors import HeliosError

LOCK_NAME = "heliosd.lock"
# EX_CANTCREAT (sysexits.h): the daemon cannot create what it needs, here the exclusive
# hold on its state directory. Distinct from 78 (config) and 1 (failure); systemd's
# RestartPreventExitStatus lists it, since restarting beside the holder cannot succeed.
EXIT_LOCKED = 73


class StateDirLocked(HeliosError):
    """Another process holds the state directory's lock."""

    code = "state_dir_locked"

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"another heliosd ({holder}) is running on {state_dir} (it holds"
            f" {state_dir / LOCK_NAME}); not starting",
            details={"state_dir": str(state_dir), "pid": pid},
        )
        self.state_dir = state_dir
        self.pid = pid


class RunLock:
    """The exclusive lock of one state directory; :meth:`acquire` is idempotent."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write our pid into the file, or raise :class:`StateDirLocked`."""
        if self._fd is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateDirLocked(self.state_dir, pid) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            # The pid is only for the message of a second starter; the lock is what counts.
            pass
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the process exiting does the same)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a pid left behind would name a process that is gone
        os.close(fd)  # closing the only descriptor releases the flock


def _read_pid(fd: int) -> int | None:
    """The holder's pid as written in the file; None if not (yet) readable.

    A holder writes its pid right after it takes the lock: a starter that loses the race
    by microseconds may read an empty file, so it looks a few times before saying unknown.
    """
    for _ in range(20):
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.005)
    return None


__all__ = ["EXIT_LOCKED", "LOCK_NAME", "RunLock", "StateDirLocked"]
