"""Synthetic training data: KernelSynth (GP prior samples) and TSMixup (convex mixes of real series)."""

from tsfm.data.synthetic.kernelsynth import generate_kernelsynth, kernelsynth_series
from tsfm.data.synthetic.tsmixup import generate_tsmixup, tsmixup_series

__all__ = ["generate_kernelsynth", "kernelsynth_series", "generate_tsmixup", "tsmixup_series"]
