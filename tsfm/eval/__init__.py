"""Evaluation: metrics (gluonts.ev conventions), the benchmark protocol, statsforecast baselines,
suites (conf/eval/*.yaml), reports, the in-training benchmark callback and a gluonts adapter.

Entry point: ``python -m tsfm.evaluate model=<ckpt | dir | baseline> eval=<suite>``.
"""
