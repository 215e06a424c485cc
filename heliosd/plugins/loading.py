"""Plugin loading: built-ins, the ``heliosd`` entry-point group and drop-in directories.

The plugin manager is built by :func:`make_plugin_manager`, never at import time. Order of
registration:

1. the built-ins in :data:`BUILTIN_PLUGINS`, skipping those ``daemon.blocked_plugins`` names
   (the :data:`ESSENTIAL_PLUGINS` cannot be blocked: naming one is a :class:`ConfigError`);
2. the ``heliosd`` entry-point group of installed distributions (one that fails to import
   or whose name is taken stops startup: see :func:`_load_entrypoints`);
3. every ``*.py`` file of each ``daemon.plugin_dirs`` entry, sorted by name, imported as
   ``heliosd_dropin_<stem>``.

Then ``check_pending()`` runs, so a misspelled hook fails startup. Every failure here is a
:class:`ConfigError` (the daemon exits 78): restarting cannot fix a broken plugin set.

Drop-in files run with the daemon's privileges and decide about real money: their trust
checks are :mod:`heliosd.plugins.dropin_files`. The bytes that were checked and hashed are
the bytes executed (no second read), and each file's sha256 is logged and reported by
:func:`plugin_records`.

Collecting what plugins register is :mod:`heliosd.plugins.registry`; SIGHUP's reload is
:mod:`heliosd.plugins.reload`; :mod:`heliosd.plugins.manager` re-exports all three.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pluggy

from heliosd.core.config import Settings
from heliosd.core.errors import ConfigError
from heliosd.plugins import hookspecs
from heliosd.plugins.dropin_files import _check_dir, _dropin_files, _exec_module, _read_trusted

logger = logging.getLogger(__name__)

BUILTIN_PLUGINS: tuple[str, ...] = (
    "heliosd.builtin.valr.plugin",
    "heliosd.builtin.paper",
    "heliosd.builtin.gates",
    "heliosd.builtin.limits",
    "heliosd.risk.prices",
    "heliosd.risk.monitors",
    "heliosd.builtin.apprise",
    "heliosd.builtin.demo_strategy",
)

# The safety net itself: without these, LIVE could be entered unchecked or limits ignored.
ESSENTIAL_PLUGINS: tuple[str, ...] = (
    "heliosd.builtin.gates",
    "heliosd.builtin.limits",
    "heliosd.risk.prices",
    "heliosd.risk.monitors",
)

ENTRY_POINT_GROUP = hookspecs.PROJECT
DROPIN_PREFIX = "heliosd_dropin_"

PluginKind = Literal["builtin", "entrypoint", "dropin"]
SectionParser = Callable[[Mapping[str, Any], str], Any]


@dataclass
class PluginRecord:
    """One registered plugin, as ``GET /api/plugins`` shows it.

    ``sha256`` is the digest of the exact bytes executed, for drop-ins; None otherwise (the
    built-ins and entry points come from the installed package).
    """

    name: str
    kind: PluginKind
    module: str
    path: str | None
    sha256: str | None
    essential: bool
    hooks: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "module": self.module,
            "path": self.path,
            "sha256": self.sha256,
            "essential": self.essential,
            "hooks": list(self.hooks),
        }


@dataclass(frozen=True)
class _Origin:
    kind: PluginKind
    path: str | None = None
    sha256: str | None = None


class HeliosPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.origins: dict[str, _Origin] = {}
        # Essential plugins this manager was built with (tests build with other built-ins).
        self.required: tuple[str, ...] = ()


# --------------------------------------------------------------------------- building


def make_plugin_manager(
    settings: Settings, *, builtins: Sequence[str] = BUILTIN_PLUGINS
) -> pluggy.PluginManager:
    """Build the plugin manager for ``settings``; raises ConfigError on any problem.

    Only ``settings.daemon`` (``blocked_plugins``, ``plugin_dirs``) and ``settings.source``
    are read, so a manager can be built before plugin config sections are parsed
    (see :func:`load_with_plugins`). A built-in that cannot be imported is an error: a
    missing safety module must never mean "run without it".
    """
    source = settings.source
    blocked = tuple(settings.daemon.blocked_plugins)
    for name in blocked:
        # "limits" is refused like "heliosd.builtin.limits": the operator means the same.
        if name in ESSENTIAL_PLUGINS or any(
            name == e.rsplit(".", 1)[-1] for e in ESSENTIAL_PLUGINS
        ):
            raise ConfigError(
                f"{name} is an essential plugin and cannot be blocked "
                f"(essential: {', '.join(ESSENTIAL_PLUGINS)})",
                key="daemon.blocked_plugins",
                source=source,
            )

    pm = HeliosPluginManager()
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    pm.required = tuple(n for n in builtins if n in ESSENTIAL_PLUGINS)

    for modname in builtins:
        if pm.is_blocked(modname):
            logger.warning("built-in plugin %s is blocked by daemon.blocked_plugins", modname)
            continue
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            raise ConfigError(
                f"built-in plugin {modname} cannot be imported ({type(exc).__name__}: {exc}); "
                "the installation is broken"
            ) from exc
        _register(pm, module, modname, _Origin("builtin", getattr(module, "__file__", None)))

    _load_entrypoints(pm)
    for directory in settings.daemon.plugin_dirs:
        _load_dropin_dir(pm, Path(directory), source)
    _finish(pm)

    loaded = {name for name, plugin in pm.list_name_plugin() if plugin is not None}
    for name in blocked:
        if name not in loaded and name not in builtins:
            # Not an error (the plugin may be uninstalled), but worth a line in the log.
            logger.info("daemon.blocked_plugins names %s, which is not installed", name)
    return pm


def _register(pm: pluggy.PluginManager, plugin: object, name: str, origin: _Origin) -> None:
    _refuse_unmarked_hooks(plugin, name)
    try:
        registered = pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise ConfigError(f"plugin {name} is invalid: {exc}", source=origin.path or "") from exc
    if registered is None:  # blocked
        return
    if isinstance(pm, HeliosPluginManager):
        pm.origins[name] = origin


def _refuse_unmarked_hooks(plugin: object, name: str) -> None:
    """A ``heliosd_*`` function without ``@hookimpl`` would be silently ignored by pluggy."""
    for attr in dir(plugin):
        if not attr.startswith(f"{hookspecs.PROJECT}_"):
            continue
        value = getattr(plugin, attr, None)
        if (inspect.isfunction(value) or inspect.ismethod(value)) and not hasattr(
            value, f"{hookspecs.PROJECT}_impl"
        ):
            raise ConfigError(
                f"plugin {name}: function {attr} is not marked with @hookimpl "
                "(from heliosd import hookimpl)"
            )


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """The ``heliosd`` group's entry points, one distribution per name.

    ``entry_points()`` keeps the first distribution of each name on ``sys.path`` (the one
    Python imports from), so a package installed twice is not two plugins.
    """
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _describe(ep: importlib.metadata.EntryPoint) -> str:
    dist = ep.dist
    owner = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return f"entry-point plugin {ep.name!r} ({ep.value}, from {owner})"


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    """Import and register every ``heliosd`` entry point; any problem is a ConfigError.

    Not pluggy's ``load_setuptools_entrypoints``: that one lets the import error through
    without saying which plugin failed, and silently skips an entry point whose name is
    taken. An operator who installed a risk rule must never run without it, so a name
    clash (with a built-in or another distribution's entry point) refuses to start rather
    than pick one.
    """
    claimed: dict[str, str] = {}
    for ep in _entry_points():
        where = _describe(ep)
        if pm.is_blocked(ep.name) or pm.is_blocked(ep.module):
            logger.warning("%s is blocked by daemon.blocked_plugins", where)
            continue
        if ep.name in claimed:
            raise ConfigError(f"{where} has the same name as {claimed[ep.name]}")
        if pm.has_plugin(ep.name):
            raise ConfigError(f"{where} has the same name as a built-in plugin")
        claimed[ep.name] = where
        try:
            plugin = ep.load()
        except Exception as exc:
            raise ConfigError(f"{where} failed to import: {type(exc).__name__}: {exc}") from exc
        path = getattr(plugin, "__file__", None)
        try:
            _register(pm, plugin, ep.name, _Origin("entrypoint", path))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}") from exc
        logger.info("loaded %s from %s", where, path or "<object>")


def _finish(pm: pluggy.PluginManager) -> None:
    """check_pending() (misspelled hooks) and the essential plugins are still there."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("heliosd_")))
        raise ConfigError(f"{exc} (known hooks: {known})") from exc
    _require_essentials(pm)


def _require_essentials(pm: pluggy.PluginManager) -> None:
    required = pm.required if isinstance(pm, HeliosPluginManager) else ESSENTIAL_PLUGINS
    for name in required:
        if pm.get_plugin(name) is None:
            raise ConfigError(f"essential plugin {name} is not registered (unregistered?)")


# --------------------------------------------------------------------------- drop-ins


def _load_dropin_dir(pm: pluggy.PluginManager, directory: Path, source: str) -> list[str]:
    _check_dir(directory, source)
    loaded: list[str] = []
    for path in _dropin_files(directory):
        modname = DROPIN_PREFIX + path.stem
        if pm.is_blocked(modname) or pm.is_blocked(path.stem):
            logger.warning("drop-in plugin %s is blocked by daemon.blocked_plugins", path)
            continue
        if pm.has_plugin(modname):
            other = pm.origins[modname].path if isinstance(pm, HeliosPluginManager) else "?"
            raise ConfigError(f"drop-in plugin {path} has the same name as {other}")
        code = _read_trusted(path)
        digest = hashlib.sha256(code).hexdigest()
        module = _exec_module(modname, path, code)
        try:
            _register(pm, module, modname, _Origin("dropin", str(path), digest))
        except ConfigError:
            sys.modules.pop(modname, None)
            raise
        loaded.append(modname)
        logger.info("loaded drop-in plugin %s sha256=%s as %s", path, digest, modname)
    return loaded


def _helios(pm: pluggy.PluginManager) -> HeliosPluginManager:
    if not isinstance(pm, HeliosPluginManager):
        raise TypeError("reloading needs a manager built by make_plugin_manager")
    return pm


def _load_dropins(pm: pluggy.PluginManager, settings: Settings) -> None:
    for directory in settings.daemon.plugin_dirs:
        _load_dropin_dir(pm, Path(directory), settings.source)
    _finish(pm)


def _dropin_records(pm: pluggy.PluginManager) -> list[PluginRecord]:
    return [r for r in plugin_records(pm) if r.kind == "dropin"]


# --------------------------------------------------------------------------- introspection


def plugin_records(pm: pluggy.PluginManager) -> list[PluginRecord]:
    """Every registered plugin, in registration order (for ``GET /api/plugins``)."""
    origins = pm.origins if isinstance(pm, HeliosPluginManager) else {}
    out: list[PluginRecord] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        origin = origins.get(name) or _Origin(
            "builtin" if name in BUILTIN_PLUGINS else "entrypoint",
            getattr(plugin, "__file__", None),
        )
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        out.append(
            PluginRecord(
                name=name,
                kind=origin.kind,
                module=module,
                path=origin.path,
                sha256=origin.sha256,
                essential=name in ESSENTIAL_PLUGINS,
                hooks=hooks,
            )
        )
    return out
