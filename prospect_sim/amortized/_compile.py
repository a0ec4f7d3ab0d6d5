"""``torch.compile`` as ``--compile`` uses it: static shapes, torch's internal warnings off.

Compiling fuses the flow's chains of small elementwise operations into a few
loops (the spline's ~40 operations per bin lookup), which is what costs time
on a CPU; the first call of each shape compiles (30-80 s on the 2-core
development machine, then cached on disk by torch, so a later run with the
same network and shapes starts in seconds).
"""

import warnings

import torch

__all__ = ["compiled"]


def compiled(fn):
    """``fn`` compiled for static shapes (a new shape compiles a new graph)."""
    # torch's code generator warns about its own internals: not the user's concern
    warnings.filterwarnings("ignore", message=r".*torch\._prims_common\.check",
                            category=FutureWarning)
    return torch.compile(fn, dynamic=False)
