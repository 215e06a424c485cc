"""Old import path of `heliosd.core.config`, kept for plugins written against it.

New code imports from `heliosd` (the plugin API) or `heliosd.core.config`.
"""

from heliosd.core.config import *  # noqa: F403
