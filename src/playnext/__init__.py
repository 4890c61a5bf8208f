"""playnext: deep and large neural models for what to watch, listen to or play next."""

from playnext.data.interactions import Histories, IdMap, Interactions

__all__ = ["Histories", "IdMap", "Interactions"]
__version__ = "0.1.0"
