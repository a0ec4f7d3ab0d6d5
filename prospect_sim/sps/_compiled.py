"""How the batched photometry's inner loops are compiled: one decorator.

:func:`compiled` is ``numba.njit`` with the package's settings: cached on
disk (beside the package, or under ``~/.cache``; ``NUMBA_CACHE_DIR``
overrides), and with the fast-math flags that let LLVM reorder sums and
fuse multiply-adds so that the loops vectorise.  No assumptions about NaN
or infinity are allowed: a non-finite prediction must pass through as it
is, to be flagged by ``--simulate``.
"""

from numba import njit

__all__ = ["compiled", "FASTMATH"]

#: LLVM flags: reassociation, contraction (FMA), no signed zeros, reciprocals.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


def compiled(func=None, **options):
    """``numba.njit(cache=True, fastmath=FASTMATH, **options)``; usable bare or with options."""
    if func is None:
        return lambda f: compiled(f, **options)
    return njit(cache=True, fastmath=FASTMATH, **options)(func)
