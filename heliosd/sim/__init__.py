"""A protocol-faithful VALR exchange simulator (REST + WebSockets on one loopback port).

heliosd's VALR client is proven against this, so it is as strict as VALR where VALR is
documented (``/work/shared/valr-api.md``) and documents its own choice where VALR is not:
see ``heliosd.sim.errors`` (status codes and messages), ``auth`` (signature and timestamp
checks), ``rest_orders`` (v1/v2 semantics), ``matching`` (matching and fee rules), ``ws``
(WebSocket protocol) and ``config.FaultConfig`` (fault injection).
"""

from heliosd.sim.cli import run_sim, serve_forever
from heliosd.sim.config import FaultConfig, PairSpec, SimConfig
from heliosd.sim.simulator import Simulator

__all__ = ["FaultConfig", "PairSpec", "SimConfig", "Simulator", "run_sim", "serve_forever"]
