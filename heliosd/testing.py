"""Shared pytest fixtures for heliosd and its plugins (registered via the pytest11 entry point).

Fixtures arrive here as the pieces they need land; see docs/internals.md.
"""

from __future__ import annotations
