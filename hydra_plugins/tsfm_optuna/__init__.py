"""Hydra plugin entry: Hydra only instantiates sweepers defined in the ``hydra_plugins`` package.
The implementation is :class:`tsfm.search.sweeper.OptunaSweeper` (``hydra/sweeper=tsfm_optuna``)."""

from hydra.plugins.sweeper import Sweeper

from tsfm.search.sweeper import OptunaSweeper


class TsfmOptunaSweeper(OptunaSweeper, Sweeper):
    """Optuna ask-and-tell sweeper with pruning and a resumable SQLite study (see tsfm.search.sweeper)."""
