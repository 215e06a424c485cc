"""Confirmation tokens: the second step of every two-step action (a LIVE switch, a close).

A token is issued with a ``confirmation_required`` answer and confirms exactly one later
request: it is single use (taken, it is gone whatever happens next), expires after
``ttl_s``, and remembers who it was issued to (uid), the trading state's epoch it was issued
under (a stop, halt, resume or switch in between voids it) and its ``binding``: a text naming
the exact request it confirms, so a token for one request cannot confirm another. The caller
decides what a mismatch means; :meth:`Token.problem` says the usual refusals in words.

Only digests of tokens are kept, in memory: a memory dump or a log line never holds a usable
token, and a restart invalidates every token (the safe failure).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from heliosd.control.backend import Actor


@dataclass(frozen=True, slots=True)
class Token:
    expires_at: float
    uid: int | None
    user: str
    epoch: int  # the trading state's epoch when issued: void once it moves
    binding: str  # the request it confirms
    payload: Any = None  # what the first answer promised (a close's orders)

    def problem(self, actor: Actor, binding: str, epoch: int) -> str | None:
        """Why this token does not confirm ``binding`` for ``actor`` at ``epoch``, or None."""
        if self.uid != actor.uid:
            return "it was issued to someone else"
        if self.binding != binding:
            return "it was issued for a different request"
        if self.epoch != epoch:
            return (
                f"it was issued before the trading state changed (epoch {self.epoch} ->"
                f" {epoch}: a stop, halt, resume or switch)"
            )
        return None


class ConfirmTokens:
    """Issues and takes confirmation tokens (see the module docstring)."""

    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._tokens: dict[str, Token] = {}

    def issue(self, actor: Actor, epoch: int, *, binding: str, payload: Any = None) -> str:
        self._expire()
        text = secrets.token_urlsafe(24)
        self._tokens[_digest(text)] = Token(
            self._clock() + self.ttl_s, actor.uid, actor.user, epoch, binding, payload
        )
        return text

    def take(self, text: str) -> Token | None:
        """The token, removed (single use); None when unknown, used or expired."""
        self._expire()
        return self._tokens.pop(_digest(text), None)

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, t in self._tokens.items() if t.expires_at <= now]:
            del self._tokens[key]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
