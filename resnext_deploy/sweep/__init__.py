"""Sweeps over the zoo: models x precisions x engines, one Pareto report, on this machine's cores or on Ray.

Importing this package loads no heavy library; Ray, ONNX Runtime, torch and matplotlib are
imported inside the functions that need them.
"""

from resnext_deploy.sweep.plan import Plan, make_plan
from resnext_deploy.sweep.run import SweepOptions, SweepOutcome, run_sweep

__all__ = ["Plan", "SweepOptions", "SweepOutcome", "make_plan", "run_sweep"]
