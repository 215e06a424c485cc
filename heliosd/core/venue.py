"""Whether the LIVE venue is the simulator, so nothing calls its orders real money.

``heliosd demo`` and ``heliosd sim`` run the VALR simulator on loopback over plain HTTP;
the real VALR is only reachable over TLS at its own host. So a ``[valr]`` whose REST and
WebSocket URLs are both plain (``http://``, ``ws://``) and on a loopback address is the
simulator. Anything else, including a TLS URL on loopback (a local proxy could forward
it to the real VALR), counts as real money: the wrong way to err is to tell an operator
that real orders are not real.
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

from heliosd.core.config import ValrSettings

SIMULATOR_NOTE: Final = "simulator (not real money)"


def _plain_loopback(url: str, scheme: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    if parts.scheme.lower() != scheme:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_simulator(valr: ValrSettings) -> bool:
    """True when both VALR URLs are plain loopback ones: the embedded simulator's."""
    return _plain_loopback(valr.rest_url, "http") and _plain_loopback(valr.ws_url, "ws")
