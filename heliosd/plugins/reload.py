"""SIGHUP's half of the plugins: drop-ins loaded again, the config file re-read with their
sections, the register hooks called with them; all or nothing (:func:`reload_config`)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from heliosd.core.config import SECTIONS, Settings, parse_settings, read_toml
from heliosd.core.errors import ConfigError
from heliosd.plugins.loading import (
    HeliosPluginManager,
    PluginRecord,
    SectionParser,
    _dropin_records,
    _helios,
    _load_dropins,
)
from heliosd.plugins.registry import Registry, collect, config_sections

logger = logging.getLogger(__name__)


def reload_dropins(pm: pluggy.PluginManager, settings: Settings) -> list[PluginRecord]:
    """Unload every drop-in and load ``settings.daemon.plugin_dirs`` again.

    Returns the records of the drop-ins now loaded. All or nothing: on any error the
    previous drop-ins are registered again and the ConfigError propagates, so a bad edit
    never leaves the daemon with half a plugin set. The core must call :func:`collect`
    again for new rules to take effect; SIGHUP uses :func:`reload_config`, which does both
    and re-reads the config file.
    """
    with _replacing_dropins(_helios(pm)):
        _load_dropins(pm, settings)
    return _dropin_records(pm)


@dataclass(frozen=True)
class ConfigReload:
    """What a SIGHUP reload loaded; nothing of it is in effect until the core applies it.

    ``settings`` is the running settings with the file's plugin sections (core sections are
    the running ones, unchanged); ``not_applied`` names each core key (``risk.max_leverage``)
    whose value in the file differs from the running one: those wait for a restart.
    """

    settings: Settings
    registry: Registry
    dropins: list[PluginRecord]
    not_applied: tuple[str, ...]


def reload_config(pm: pluggy.PluginManager, running: Settings) -> ConfigReload:
    """SIGHUP: re-read ``running.source`` and reload the drop-ins, all or nothing.

    The drop-ins are loaded again from the running ``daemon.plugin_dirs``, the file is
    parsed with the sections of the plugins now loaded (so a new or edited drop-in section
    is validated like at startup), and every register hook is called again with those
    sections. Any failure (a missing, unreadable or invalid file, a bad key, a refused or
    failing drop-in, a duplicate name) restores the previous drop-ins and raises a
    ConfigError naming the key and the file: the caller keeps its registry and settings.
    The core sections are only compared: a restart applies them, as at startup.
    """
    helios = _helios(pm)
    # Read before anything is unloaded: an unreadable file must not even run new plugin code.
    data = read_toml(running.source)
    with _replacing_dropins(helios):
        _load_dropins(helios, running)
        sections = {name: _guarded(name, parse) for name, parse in config_sections(pm).items()}
        fresh = parse_settings(data, running.source, sections)
        effective = running.replace(plugins=fresh.plugins)
        registry = collect(pm, effective)
    return ConfigReload(effective, registry, _dropin_records(pm), core_changes(running, fresh))


def core_changes(running: Settings, fresh: Settings) -> tuple[str, ...]:
    """The core keys (``section.key``) whose values differ; the values are never returned
    (some are secrets: ``Secret`` compares by value without showing it)."""
    changed: list[str] = []
    for section in SECTIONS:
        old, new = getattr(running, section), getattr(fresh, section)
        for name in old.__struct_fields__:
            if getattr(old, name) != getattr(new, name):
                changed.append(f"{section}.{name}")
    return tuple(changed)


def _guarded(section: str, parse: SectionParser) -> SectionParser:
    """A plugin's section parser whose crash is a ConfigError naming the section.

    parse_settings lets any other exception through; on a reload that would be an error
    without the key, and it must read like every other refused reload.
    """

    def guarded(raw: Mapping[str, Any], source: str) -> Any:
        try:
            return parse(raw, source)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"the parser of [{section}] failed: {type(exc).__name__}: {exc}",
                key=section,
                source=source,
            ) from exc

    return guarded


@contextlib.contextmanager
def _replacing_dropins(pm: HeliosPluginManager) -> Iterator[None]:
    """Unload every drop-in; if the body raises, put the previous ones back exactly.

    The body loads the new set. Exceptions propagate after the rollback, so the caller
    sees the error and the manager is as it was (same plugin objects, same modules).
    """
    old = [
        (name, pm.get_plugin(name), origin)
        for name, origin in pm.origins.items()
        if origin.kind == "dropin"
    ]
    saved_modules = {name: sys.modules.get(name) for name, _, _ in old}
    for name, plugin, _ in old:
        pm.unregister(plugin, name=name)
        del pm.origins[name]
        sys.modules.pop(name, None)
    try:
        yield
    except BaseException:
        # Everything registered as a drop-in now came from this failed attempt.
        for name in [n for n, o in pm.origins.items() if o.kind == "dropin"]:
            plugin = pm.get_plugin(name)
            if plugin is not None:
                pm.unregister(plugin, name=name)
            pm.origins.pop(name, None)
            sys.modules.pop(name, None)
        for name, plugin, origin in old:
            pm.register(plugin, name=name)
            pm.origins[name] = origin
            module = saved_modules.get(name)
            if module is not None:
                sys.modules[name] = module
        raise
