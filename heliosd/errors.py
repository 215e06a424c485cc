"""Old import path of `heliosd.core.errors`, kept for plugins written against it.

New code imports from `heliosd` (the plugin API) or `heliosd.core.errors`.
"""

from heliosd.core.errors import *  # noqa: F403
