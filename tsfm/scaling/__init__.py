"""Neural scaling-law studies: read a Hydra sweep of baseline models, fit ``L = A x^-alpha + E``
for ``x`` in parameters ``N``, tokens ``D`` and compute ``C = 6ND``, and the joint law
``L(N, D) = E + A N^-alpha + B D^-beta`` with its compute-optimal allocation, with bootstrap CIs.

``python -m tsfm.scaling fit <multirun dir>``; see ``experiments/scaling/README.md``.
"""

from tsfm.scaling.fit import PowerLawFit, fit_power_law
from tsfm.scaling.joint import JointFit, compute_optimal, fit_joint
from tsfm.scaling.results import Run, read_sweep

__all__ = ["JointFit", "PowerLawFit", "Run", "compute_optimal", "fit_joint", "fit_power_law", "read_sweep"]
