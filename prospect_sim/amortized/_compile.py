"""``torch.compile`` as ``--compile`` uses it: static shapes, torch's internal
warnings off, and the plain function whenever compiling fails.

Compiling fuses the flow's chains of small elementwise operations into a few
loops (the spline's ~40 operations per bin lookup), which is what costs time
on a CPU; the first call of each shape compiles (30-80 s on the 2-core
development machine, then cached on disk by torch, so a later run with the
same network and shapes starts in seconds).
"""

import logging
import warnings

import torch

__all__ = ["compiled"]

log = logging.getLogger(__name__)


class _Compiled:
    """Calls ``fn`` compiled; after a failed compile (no C++ compiler, an unsupported
    operation ...) warns once and calls ``fn`` itself from then on."""

    def __init__(self, fn, what):
        self.fn, self.what = fn, what
        self.fast = torch.compile(fn, dynamic=False)

    def __call__(self, *args):
        if self.fast is not None:
            try:
                return self.fast(*args)
            except Exception as err:
                first = str(err).splitlines()[0] if str(err) else ""
                log.warning("--compile failed (%s: %s); %s without it",
                            type(err).__name__, first, self.what)
                self.fast = None
        return self.fn(*args)


def compiled(fn, what):
    """``fn`` compiled for static shapes (a new shape compiles a new graph), falling
    back to ``fn`` with a warning naming ``what`` (e.g. "training") if that fails."""
    # torch's code generator warns about its own internals: not the user's concern
    warnings.filterwarnings("ignore", message=r".*torch\._prims_common\.check",
                            category=FutureWarning)
    return _Compiled(fn, what)
