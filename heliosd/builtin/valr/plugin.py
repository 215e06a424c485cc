"""The built-in ``valr`` exchange plugin: registers :class:`ValrClient` under ``"valr"``."""

from __future__ import annotations

from collections.abc import Callable

from heliosd.builtin.valr.client import ValrClient
from heliosd.config import Settings
from heliosd.hookspecs import hookimpl
from heliosd.protocols import ExchangeContext, ExchangeFactory

NAME = "valr"


def make_client(ctx: ExchangeContext) -> ValrClient:
    """The factory the core calls with the mode's context (see ``ExchangeFactory``)."""
    return ValrClient.from_context(ctx)


@hookimpl
def heliosd_register_exchanges(
    register: Callable[[str, ExchangeFactory], None], config: Settings
) -> None:
    """Register the VALR client factory as ``valr`` (``[exchange] live = "valr"``)."""
    register(NAME, make_client)
