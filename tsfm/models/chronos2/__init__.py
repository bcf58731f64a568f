"""Chronos-2: group-attention encoder with covariates (weight-compatible with amazon/chronos-2)."""
