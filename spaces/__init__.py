"""Search spaces shipped with rnasframe (each implements :class:`~rnasframe.interfaces.SearchSpace`)."""

from rnasframe.spaces.darts import DartsSpace

__all__ = ["DartsSpace"]
