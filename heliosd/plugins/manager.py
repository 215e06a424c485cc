"""The plugin manager's names in one place, for the daemon, heliosctl's tools and tests.

The code lives where it belongs: :mod:`heliosd.plugins.loading` (building the manager:
built-ins, entry points, trusted drop-in files), :mod:`heliosd.plugins.registry` (collecting
what plugins register, their config sections) and :mod:`heliosd.plugins.reload` (SIGHUP's
all-or-nothing reload). Plugins themselves import from :mod:`heliosd` only.
"""

from __future__ import annotations

from heliosd.plugins.loading import (
    BUILTIN_PLUGINS,
    DROPIN_PREFIX,
    ENTRY_POINT_GROUP,
    ESSENTIAL_PLUGINS,
    HeliosPluginManager,
    PluginKind,
    PluginRecord,
    SectionParser,
    make_plugin_manager,
    plugin_records,
)
from heliosd.plugins.registry import Registry, collect, config_sections, load_with_plugins
from heliosd.plugins.reload import ConfigReload, core_changes, reload_config, reload_dropins

__all__ = [
    "BUILTIN_PLUGINS",
    "DROPIN_PREFIX",
    "ENTRY_POINT_GROUP",
    "ESSENTIAL_PLUGINS",
    "ConfigReload",
    "HeliosPluginManager",
    "PluginKind",
    "PluginRecord",
    "Registry",
    "SectionParser",
    "collect",
    "config_sections",
    "core_changes",
    "load_with_plugins",
    "make_plugin_manager",
    "plugin_records",
    "reload_config",
    "reload_dropins",
]
