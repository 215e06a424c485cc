"""``python -m heliosd.sim --port 8765``."""

import sys

from heliosd.sim.cli import run_sim

sys.exit(run_sim(sys.argv[1:]))
