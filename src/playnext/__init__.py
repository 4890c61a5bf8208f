"""playnext: deep and large neural models for what to watch, listen to or play next.

`import playnext as pn` gives the public API (`playnext.api`): Dataset, splits, models,
evaluate/compare, train, save/load. `pn.evaluate` is the function; the evaluation package
(`playnext.evaluate.*`) is still imported by its full dotted name.
"""

import os as _os
import sys as _sys

# The command line (the `playnext` script, `python -m playnext.cli`) lets idle OpenMP threads sleep
# instead of spinning, unless the caller chose otherwise: on shared cores a spinning thread takes
# time from the other jobs. OpenMP reads this once, when torch loads, which the imports below do,
# so it is set here rather than in cli.py. A notebook keeps the OpenMP default.
if _os.path.basename(_sys.argv[0] if _sys.argv else "") in ("playnext", "playnext.exe") or (
    "playnext.cli" in getattr(_sys, "orig_argv", ())
):
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from playnext.api import *  # noqa: F403  (the public API is `playnext.api.__all__`)
from playnext.api import __all__ as _API
from playnext.data.interactions import Histories, IdMap, Interactions
from playnext.version import __version__

__all__ = [*_API, "Histories", "IdMap", "Interactions", "__version__"]
