"""A reader that went away (``heliosctl orders | head -3``) ends a command quietly.

Python turns SIGPIPE into BrokenPipeError; left alone it prints a traceback, and even once
caught, the interpreter's last flush of ``sys.stdout`` raises again ("Exception ignored
... BrokenPipeError") and exits 120. :func:`stdout_gone` points file descriptor 1 at
``/dev/null`` so nothing more can fail, and returns the exit code a shell shows for a tool
that SIGPIPE ended (128 + 13), which ``set -o pipefail`` scripts already expect from
``yes | head``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Final

EXIT_BROKEN_PIPE: Final = 141


def stdout_gone() -> int:
    """Silence stdout for the rest of the process; the exit code to return."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    return EXIT_BROKEN_PIPE
