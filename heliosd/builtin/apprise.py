"""The ``apprise`` notifier: every ``[notify] urls`` entry, through the Apprise library.

Apprise URLs carry tokens and passwords (``tgram://BOTTOKEN/CHAT``, ``json://user:pw@host``),
so they are handled as secrets end to end:

* ``Secret.reveal()`` is called only to hand the URL to Apprise when the notifier is built;
  our messages name a URL by its position (``notify.urls[1]``), never by its text.
* Apprise and the HTTP stack under it (requests/urllib3) log URLs and request lines at debug
  level and hosts at warning level. A logging filter on those loggers replaces every
  fragment of a configured URL with ``<redacted>`` before any handler sees the record.

Delivery: ``send`` runs Apprise's blocking ``notify`` in a worker thread with Apprise's own
call timeout (``notify.timeout_s``), so a hanging receiver frees the thread instead of pinning
it. Urgent events go out as Apprise type ``failure`` with ``URGENT:`` leading the title; the
rest as ``info``. A refused or timed-out delivery raises :class:`TransientError`, and the
outbox in :mod:`heliosd.notify` retries it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import apprise

from heliosd.core.config import NotifySettings, Secret, Settings
from heliosd.core.errors import ConfigError, TransientError
from heliosd.core.protocols import Event, Notifier
from heliosd.plugins.hookspecs import hookimpl

log = logging.getLogger(__name__)

URGENT_PREFIX = "URGENT: "
# The loggers that can print a notification URL or a request line built from one.
_LEAKY_LOGGERS = ("apprise", "requests", "urllib3")
_REDACTED = "<redacted>"


class _RedactUrls(logging.Filter):
    """Rewrites log records so that no fragment of a configured URL survives.

    Installed on the leaky loggers themselves (a logger's filter runs before any handler,
    including pytest's caplog and the journald handler). One instance serves every notifier;
    it only ever learns fragments, never forgets them (a process has few URLs).
    """

    def __init__(self) -> None:
        super().__init__("heliosd-redact")
        self._fragments: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def learn(self, url: str) -> None:
        self._fragments.update(_fragments(url))
        # Longest first, so a whole URL is replaced before its pieces.
        ordered = sorted(self._fragments, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in ordered)) if ordered else None

    def redact(self, text: str) -> str:
        return self._pattern.sub(_REDACTED, text) if self._pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep only the template
            message = str(record.msg)
        clean = self.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        record.exc_info = None  # exc_text now carries the (redacted) traceback
        record.msg, record.args = clean, None
        return True


_HOST = re.compile(r"localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")  # a DNS name or IPv4


def _fragments(url: str) -> set[str]:
    """Every piece of ``url`` that may be secret: the whole URL, the part after the scheme,
    user and password, and every piece of 3+ characters except the scheme, a port and a host
    that is a DNS name or address (kept so "cannot reach host" warnings stay useful; many
    Apprise schemes put a token where the host goes, and such a host has no dot)."""
    out = {url}
    _, sep, rest = url.partition("://")
    if not sep:
        rest = url
    out.add(rest)
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        out.update(p for p in (user, password) if p)
    host = hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport
    for piece in re.split(r"[/:@?&=#,;+\s]+", rest):
        if len(piece) < 3 or re.fullmatch(r"\d{1,5}", piece):
            continue
        if piece == host and _HOST.fullmatch(piece):
            continue
        out.add(piece)
    out.update({unquote(f) for f in out})
    return {f for f in out if f}


_redactor = _RedactUrls()
for _name in _LEAKY_LOGGERS:
    logging.getLogger(_name).addFilter(_redactor)


def _install_on_children() -> None:
    # Filters do not inherit: urllib3 logs through urllib3.connectionpool etc., which exist
    # once requests is imported (Apprise imports it). Idempotent.
    for name in list(logging.root.manager.loggerDict):
        if name.split(".", 1)[0] in _LEAKY_LOGGERS:
            logger = logging.getLogger(name)
            if _redactor not in logger.filters:
                logger.addFilter(_redactor)


class AppriseNotifier:
    """Sends events to every configured Apprise URL. Implements ``heliosd.core.protocols.Notifier``.

    Construction validates each URL (a URL Apprise cannot use is a ConfigError naming its
    index, so a typo fails startup instead of silencing alerts).
    """

    name = "apprise"

    def __init__(self, urls: Sequence[Secret], *, timeout_s: Decimal | float = 10) -> None:
        if not urls:
            raise ConfigError("at least one Apprise URL is needed", key="notify.urls")
        self._timeout = float(timeout_s)
        asset = apprise.AppriseAsset(
            # Memory only: no cache files under $HOME (systemd's ProtectHome hides it).
            storage_mode="memory",
            service_timeout=self._timeout,
        )
        self._apprise = apprise.Apprise(asset=asset)
        for index, url in enumerate(urls):
            revealed = url.reveal()
            _redactor.learn(revealed)
            _install_on_children()
            if not self._apprise.add(revealed):
                raise ConfigError(
                    "is not a URL Apprise understands (see https://appriseit.com/services/)",
                    key=f"notify.urls[{index}]",
                )
        _install_on_children()
        self.count = len(urls)

    @classmethod
    def from_settings(cls, settings: NotifySettings) -> AppriseNotifier:
        return cls(settings.urls, timeout_s=settings.timeout_s)

    async def send(self, event: Event) -> None:
        """Deliver ``event`` to every URL; raises TransientError unless all accepted it."""
        title = (URGENT_PREFIX + event.title) if event.urgent else event.title
        notify_type = apprise.NotifyType.FAILURE if event.urgent else apprise.NotifyType.INFO
        result = await asyncio.to_thread(self._notify, event.body or title, title, notify_type)
        if not result:
            raise TransientError(f"apprise: {_describe(result, self.count)}")

    def _notify(self, body: str, title: str, notify_type: Any) -> Any:
        return self._apprise.notify(
            body=body, title=title, notify_type=notify_type, timeout=self._timeout
        )


def _describe(result: Any, count: int) -> str:
    """A secret-free account of a failed Apprise call: status and per-service outcomes."""
    status = getattr(getattr(result, "status", None), "name", None) or "failed"
    try:
        services = list(result)
    except TypeError:  # older Apprise returns a bare bool
        return f"delivery failed ({count} URLs)"
    ok = sum(1 for s in services if s)
    names = ", ".join(
        f"{getattr(s, 'name', '?')} {getattr(getattr(s, 'status', None), 'name', '?').lower()}"
        for s in services
        if not s
    )
    return _redactor.redact(f"{status.lower()}, {ok}/{count} URLs accepted ({names})")


@hookimpl
def heliosd_register_notifiers(register: Callable[[Notifier], None], config: Settings) -> None:
    """Register the Apprise notifier when ``[notify] urls`` has any URL."""
    if config.notify.urls:
        register(AppriseNotifier.from_settings(config.notify))
