"""Plugins shipped in the box, registered from heliosd.plugins.BUILTIN_PLUGINS."""
