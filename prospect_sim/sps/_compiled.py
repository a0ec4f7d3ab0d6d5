"""How the batched photometry's inner loops are compiled: one decorator.

:func:`compiled` is ``numba.njit`` with the package's settings: cached on
disk (beside the package, or under ``~/.cache``; ``NUMBA_CACHE_DIR``
overrides), and with the fast-math flags that let LLVM reorder sums and
fuse multiply-adds so that the loops vectorise.  No assumptions about NaN
or infinity are allowed: a non-finite prediction must pass through as it
is, to be flagged by ``--simulate``.

Where numba finds no writable place for its cache (a read-only install,
a read-only home and no ``NUMBA_CACHE_DIR``), the loops are compiled in
memory instead, once per process (about 3 s), and one warning says how to
keep them.
"""

import logging

from numba import njit

__all__ = ["compiled", "FASTMATH"]

log = logging.getLogger(__name__)

#: LLVM flags: reassociation, contraction (FMA), no signed zeros, reciprocals.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

_warned = False


def compiled(func=None, **options):
    """``numba.njit(cache=True, fastmath=FASTMATH, **options)``; usable bare or with options.

    Falls back to ``cache=False`` (with one warning per process) when numba
    has nowhere to write its cache.
    """
    if func is None:
        return lambda f: compiled(f, **options)
    try:
        return njit(cache=True, fastmath=FASTMATH, **options)(func)
    except RuntimeError as error:
        if "no locator available" not in str(error):
            raise
        _warn_uncached()
        return njit(cache=False, fastmath=FASTMATH, **options)(func)


def _warn_uncached():
    global _warned
    if not _warned:
        _warned = True
        log.warning("numba has no writable cache folder (the package folder and "
                    "~/.cache are read-only): the photometry loops are compiled "
                    "in every process (about 3 s); set NUMBA_CACHE_DIR to a "
                    "writable folder to compile them once")
