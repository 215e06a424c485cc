"""Every ``heliosd_*`` hook. The docstring of each hook is its whole contract.

pluggy cannot await: hooks are synchronous and *register objects* through the ``register``
callback they are given; the core then drives those objects' async methods (each call under a
timeout where the contract says so). Hooks are always called with keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from heliosd.core.config import Settings
    from heliosd.core.protocols import ExchangeFactory, Gate, Monitor, Notifier, RiskRule, Strategy
    from heliosd.plugins.facade import DaemonView

PROJECT = "heliosd"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------- venues


@hookspec
def heliosd_register_exchanges(
    register: Callable[[str, ExchangeFactory], None], config: Settings
) -> None:
    """Register exchange client factories by name.

    Called once at startup. ``register(name, factory)``: ``factory(ExchangeContext)`` returns an
    object implementing :class:`heliosd.core.protocols.ExchangeClient`. ``[exchange] live`` and
    ``[exchange] paper`` in the config pick which names serve LIVE and PAPER. Registering a
    name twice is a startup error. Return value ignored.
    """


# --------------------------------------------------------------------------- safety


@hookspec
def heliosd_register_gates(register: Callable[[Gate], None], config: Settings) -> None:
    """Register pre-LIVE safety gates (:class:`heliosd.core.protocols.Gate`).

    Every registered gate runs on every request to switch to LIVE, concurrently, each under
    the core's gate timeout. A gate that raises or times out counts as failed (fail closed).
    Gate names must be unique. Return value ignored.
    """


@hookspec
def heliosd_register_risk_rules(register: Callable[[RiskRule], None], config: Settings) -> None:
    """Register pre-trade risk rules (:class:`heliosd.core.protocols.RiskRule`).

    The router calls every rule on every order, manual or automatic, in both modes (unless
    ``risk.enforce_in_paper`` is false). Verdicts combine: any Reject rejects, Caps take the
    smallest quantity; every verdict is stored with the order. A rule that raises or times
    out rejects. Rule names must be unique. Return value ignored.
    """


@hookspec
def heliosd_register_monitors(register: Callable[[Monitor], None], config: Settings) -> None:
    """Register ledger monitors (:class:`heliosd.core.protocols.Monitor`).

    ``on_update`` is called after every fill and every price update with the mode's ledger
    snapshot; returning an :class:`heliosd.core.types.Action` trips a breaker (halt or emergency
    stop). Breakers are persisted and survive restarts. A monitor that raises, or returns
    anything but None or a well-formed Action, counts as a HALT under breaker
    ``monitor:<name>``, latched until a resume (fail closed). Return value ignored.
    """


# --------------------------------------------------------------------------- trading


@hookspec
def heliosd_register_strategies(register: Callable[[Strategy], None], config: Settings) -> None:
    """Register strategies (:class:`heliosd.core.protocols.Strategy`) the engine may run.

    ``[engine] strategy`` names the one to run. A strategy's intents go through the same
    router and risk rules as manual orders. A strategy that raises is stopped and reported.
    Return value ignored.
    """


@hookspec
def heliosd_register_notifiers(register: Callable[[Notifier], None], config: Settings) -> None:
    """Register notification sinks (:class:`heliosd.core.protocols.Notifier`).

    Events are written to the outbox in the transaction that caused them; a delivery task
    calls ``send`` on every notifier and retries failures. Trading never waits on delivery.
    Return value ignored.
    """


# --------------------------------------------------- config and lifecycle


@hookspec
def heliosd_config_sections() -> Mapping[str, Callable[[Mapping[str, Any], str], Any]]:
    """Return ``{section_name: parser}`` for the config sections this plugin owns.

    ``parser(raw_table, source)`` validates the raw TOML table and returns a typed settings
    object, raising :class:`heliosd.core.errors.ConfigError` naming the key on bad input. Parsed
    objects are available as ``settings.plugins[section_name]``. A section no plugin claims is
    a config error.
    """
    raise NotImplementedError


@hookspec
def heliosd_startup(daemon: DaemonView) -> None:
    """Called once the store, exchanges and feeds are up, before the control API listens.

    ``daemon`` is a :class:`heliosd.plugins.facade.DaemonView`: the running settings, store,
    market data, ledgers, router and breakers (look, do not drive)."""


@hookspec
def heliosd_shutdown(daemon: DaemonView) -> None:
    """Called at the start of a staged shutdown, before orders are drained (the same
    :class:`heliosd.plugins.facade.DaemonView` as ``heliosd_startup``)."""
