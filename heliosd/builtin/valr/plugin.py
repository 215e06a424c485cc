"""The built-in ``valr`` exchange plugin: registers :class:`ValrClient` under ``"valr"``."""

from __future__ import annotations

from collections.abc import Callable

from heliosd.builtin.valr.client import ValrClient
from heliosd.core.config import Settings
from heliosd.core.protocols import ExchangeContext, ExchangeFactory
from heliosd.plugins.hookspecs import hookimpl

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
