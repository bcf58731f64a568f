"""Hyperparameter search: an Optuna sweeper for Hydra (``hparams_search=optuna``) and the
pruning callback its jobs use. See :mod:`tsfm.search.sweeper`."""
