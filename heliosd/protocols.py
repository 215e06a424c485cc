"""Old import path of `heliosd.core.protocols`, kept for plugins written against it.

New code imports from `heliosd` (the plugin API) or `heliosd.core.protocols`.
"""

from heliosd.core.protocols import *  # noqa: F403
