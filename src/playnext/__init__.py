"""playnext: deep and large neural models for what to watch, listen to or play next.

`import playnext as pn` gives the public API (`playnext.api`): Dataset, splits, models,
evaluate/compare, train, save/load. `pn.evaluate` is the function; the evaluation package
(`playnext.evaluate.*`) is still imported by its full dotted name.
"""

from playnext.api import *  # noqa: F403  (the public API is `playnext.api.__all__`)
from playnext.api import __all__ as _API
from playnext.data.interactions import Histories, IdMap, Interactions
from playnext.version import __version__

__all__ = [*_API, "Histories", "IdMap", "Interactions", "__version__"]
