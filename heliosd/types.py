"""Old import path of `heliosd.core.types`, kept for plugins written against it.

New code imports from `heliosd` (the plugin API) or `heliosd.core.types`.
"""

from heliosd.core.types import *  # noqa: F403
