"""Default quantile levels of the forecasting API (a leaf module: anything may import it)."""

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
