"""What the plugins register, collected: :func:`collect` calls every ``heliosd_register_*``
hook once per plugin, so each registered object is attributed to the plugin that registered
it (for duplicate errors and for ``GET /api/plugins``); :func:`config_sections` gathers the
plugins' own config sections, and :func:`load_with_plugins` reads a config file with them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from heliosd.core.config import SECTIONS, Settings, load_settings, parse_settings, read_toml
from heliosd.core.errors import ConfigError
from heliosd.core.protocols import ExchangeFactory, Gate, Monitor, Notifier, RiskRule, Strategy
from heliosd.plugins.loading import (
    BUILTIN_PLUGINS,
    SectionParser,
    _require_essentials,
    make_plugin_manager,
)

logger = logging.getLogger(__name__)


# hook suffix -> the method every registered object of that kind must have
_OBJECT_KINDS: dict[str, str] = {
    "gates": "check",
    "risk_rules": "check",
    "monitors": "on_update",
    "strategies": "on_market",
    "notifiers": "send",
}


@dataclass
class Registry:
    """Everything the plugins registered, each name unique within its kind.

    ``owners`` maps each risk rule and gate name to the plugin that registered it;
    ``kind_owners[kind][name]`` does the same for every kind ("exchanges", "gates",
    "risk_rules", "monitors", "strategies", "notifiers").
    """

    exchanges: dict[str, ExchangeFactory] = field(default_factory=dict)
    gates: list[Gate] = field(default_factory=list)
    risk_rules: list[RiskRule] = field(default_factory=list)
    monitors: list[Monitor] = field(default_factory=list)
    strategies: dict[str, Strategy] = field(default_factory=dict)
    notifiers: list[Notifier] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)
    kind_owners: dict[str, dict[str, str]] = field(default_factory=dict)


def _impls_in_order(pm: pluggy.PluginManager, hook_name: str) -> list[Any]:
    """The hook's implementations in plugin registration order (built-ins first)."""
    order = {name: i for i, (name, _) in enumerate(pm.list_name_plugin())}
    caller = getattr(pm.hook, hook_name)
    impls = list(caller.get_hookimpls())
    for impl in impls:
        if impl.hookwrapper or impl.wrapper:
            # A wrapper could swallow another plugin's registration (say, a limit's).
            raise ConfigError(f"plugin {impl.plugin_name}: {hook_name} may not be a wrapper")
    return sorted(impls, key=lambda impl: order.get(impl.plugin_name, len(order)))


def _call(impl: Any, hook_name: str, kwargs: Mapping[str, Any]) -> Any:
    try:
        return impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"plugin {impl.plugin_name} failed in {hook_name}: {type(exc).__name__}: {exc}"
        ) from exc


def collect(pm: pluggy.PluginManager, settings: Settings) -> Registry:
    """Call every ``heliosd_register_*`` hook and gather the objects; ConfigError on conflict.

    Each plugin's hook is called on its own with ``register=`` and ``config=settings``, so
    every object is attributed to its plugin. Names are unique per kind: a second object
    with a taken name is refused naming both plugins. Objects must have a non-empty ``name``
    and their protocol method.
    """
    _require_essentials(pm)
    reg = Registry()
    for kind in ("exchanges", *_OBJECT_KINDS):
        reg.kind_owners[kind] = {}

    def claim(kind: str, name: object, plugin: str) -> str:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"plugin {plugin} registered a {kind} object without a name")
        owners = reg.kind_owners[kind]
        if name in owners:
            raise ConfigError(
                f"duplicate {kind} name {name!r}: registered by {owners[name]} and by {plugin}"
            )
        owners[name] = plugin
        return name

    hook = "heliosd_register_exchanges"
    for impl in _impls_in_order(pm, hook):

        def add_exchange(name: str, factory: ExchangeFactory, _p: str = impl.plugin_name) -> None:
            if not callable(factory):
                raise ConfigError(f"plugin {_p} registered exchange {name!r} with no factory")
            reg.exchanges[claim("exchanges", name, _p)] = factory

        _call(impl, hook, {"register": add_exchange, "config": settings})

    for kind, method in _OBJECT_KINDS.items():
        hook = f"heliosd_register_{kind}"
        for impl in _impls_in_order(pm, hook):

            def add(obj: Any, _p: str = impl.plugin_name, _k: str = kind, _m: str = method) -> None:
                name = claim(_k, getattr(obj, "name", None), _p)
                if not callable(getattr(obj, _m, None)):
                    raise ConfigError(f"plugin {_p}: {_k} object {name!r} has no {_m}() method")
                if _k == "strategies":
                    reg.strategies[name] = obj
                else:
                    getattr(reg, _k).append(obj)
                if _k in ("gates", "risk_rules"):
                    reg.owners[name] = _p

            _call(impl, hook, {"register": add, "config": settings})
    return reg


def config_sections(pm: pluggy.PluginManager) -> dict[str, SectionParser]:
    """Merge every plugin's ``heliosd_config_sections()``; a section claimed twice is an error."""
    hook = "heliosd_config_sections"
    out: dict[str, SectionParser] = {}
    owner: dict[str, str] = {name: "heliosd core" for name in SECTIONS}
    for impl in _impls_in_order(pm, hook):
        sections = _call(impl, hook, {})
        if sections is None:
            continue
        if not isinstance(sections, Mapping):
            raise ConfigError(f"plugin {impl.plugin_name}: {hook} must return a mapping")
        for name, parser in sections.items():
            if name in owner:
                raise ConfigError(
                    f"config section [{name}] is claimed by {owner[name]} and by {impl.plugin_name}"
                )
            if not callable(parser):
                raise ConfigError(f"plugin {impl.plugin_name}: parser of [{name}] not callable")
            owner[name] = impl.plugin_name
            out[name] = parser
    return out


def load_with_plugins(
    path: str | os.PathLike[str], *, builtins: Sequence[str] = BUILTIN_PLUGINS
) -> tuple[Settings, pluggy.PluginManager]:
    """Load a config file whose sections may belong to plugins.

    The ``[daemon]`` table alone says which plugins to load, so it is parsed first, the
    manager is built from it, and the whole file is then parsed with the plugins' sections.
    """
    source = str(path)
    data = read_toml(path)
    boot = parse_settings({"daemon": data.get("daemon", {})}, source)
    pm = make_plugin_manager(boot, builtins=builtins)
    return load_settings(path, config_sections(pm)), pm
