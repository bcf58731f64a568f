"""The model families. Importing this package registers every family's :class:`~tsfm.models.spec.FamilySpec`
(see :mod:`tsfm.models.spec` for how to add one)."""

from tsfm.models import baseline, chronos, chronos2, moirai  # noqa: F401 - registers their specs
from tsfm.models.spec import FamilySpec, describe, detect, families, get

__all__ = ["FamilySpec", "describe", "detect", "families", "get"]
