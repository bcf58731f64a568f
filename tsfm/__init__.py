"""tsfm: pretrain, fine-tune, evaluate, scale and serve time series foundation models."""

__version__ = "0.1.0"
