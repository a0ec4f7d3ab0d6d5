"""Reading one parameter of a batch: shared options, per-object values, ranges.

Used by :mod:`.params` and by every component (:mod:`.component`) for
the parameters it reads, so that all of them are checked alike.
"""

import math

import numpy as np

from ..errors import SPSError

__all__ = ["scalar_option", "broadcast", "check_range"]


def scalar_option(params, key, default):
    """The one value of ``params[key]`` that a whole batch shares (``default`` if absent).

    >>> int(scalar_option({"sfh": [4, 4]}, "sfh", 1))
    4
    """
    value = params.get(key, default)
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value                      # one value (the per-object path's usual case)
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    value = np.atleast_1d(value)
    if value.size == 0:
        return default
    if not np.all(value == value.flat[0]):
        raise SPSError(f"{key} must be the same for every object of a batch, got {value}; "
                       "split the batch by it.")
    return value.flat[0]


def broadcast(value, n, key):
    """``value`` as a float array of shape (n,): a scalar repeated, or n values."""
    if isinstance(value, (int, float, np.number)):
        return np.full(n, float(value)) if n > 1 else np.array([float(value)])
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0 or arr.size == 1:
        value = float(arr.reshape(-1)[0])
        return np.full(n, value) if n > 1 else np.array([value])
    arr = arr.reshape(-1)
    if len(arr) != n:
        raise SPSError(f"{key} has {len(arr)} values for a batch of {n} objects; expected "
                       f"a scalar or an array of shape ({n},).")
    return arr


def check_range(key, arr, lo, hi, lo_open=False, unit=""):
    """Raise :class:`SPSError` naming the first value of ``arr`` outside [lo, hi] (or not finite)."""
    if len(arr) == 1:                     # one object: Python floats, ten times faster
        value = float(arr[0])
        if math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi:
            return
    bad = ~np.isfinite(arr) | (arr > hi) | ((arr <= lo) if lo_open else (arr < lo))
    if bad.any():
        value = arr[bad][0]
        bracket = "(" if lo_open else "["
        raise SPSError(f"{key}={value!r}{unit} is outside what the library covers: allowed "
                       f"{bracket}{lo:.6g}, {hi:.6g}]{unit}.")
