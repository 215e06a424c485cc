"""Plugins: the hook specifications, the plugin manager, drop-ins."""
