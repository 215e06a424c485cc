"""Plugins shipped in the box, registered from heliosd.plugins.manager.BUILTIN_PLUGINS."""
