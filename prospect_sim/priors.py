"""Prospector's common priors, evaluated without scipy.stats' per-call overhead.

``prospect.models.priors.Prior.__call__`` evaluates ``distribution.pdf`` of
scipy.stats and takes its log: about 25 microseconds per parameter and
call, almost all of it scipy's argument handling, which once the model
photometry costs ~0.15 ms (the point path) is as much as the prediction.
:func:`log_density` computes the same pdf with the same formula and
support as scipy (so the same values, to rounding, and the same ``-inf``
outside the support and where the pdf underflows; ``-inf`` also for
``nan``, where Prospector returns ``nan``: both mean "outside the prior"
to ``lnprobfn``) for the priors parameter files use most:

========================  ==============================  ================
Prospector prior          scipy.stats distribution        pdf
========================  ==============================  ================
``Uniform``, ``TopHat``   ``uniform(loc=mini,             1 / (maxi - mini)
                          scale=maxi - mini)``            on [mini, maxi]
``LogUniform``            ``reciprocal(mini, maxi)``      1 / (x ln(maxi / mini))
                                                          on [mini, maxi]
``Normal``                ``norm(loc=mean, scale=sigma)`` exp(-z^2 / 2) /
                                                          (sqrt(2 pi) sigma)
========================  ==============================  ================

Any other prior, a subclass of these (whose distribution may differ), a
call with keyword arguments (which update the prior) and degenerate
parameters (``maxi <= mini``, ``sigma <= 0``) go to Prospector's own code.
:func:`prospect_sim.sps._compat.install` routes ``Prior.__call__`` here.
"""

import math

import numpy as np

__all__ = ["log_density"]

_SQRT_2PI = np.sqrt(2.0 * np.pi)


def log_density(prior, x):
    """ln pdf of ``prior`` at ``x`` as Prospector computes it, or None where it has no closed form here.

    Parameters
    ----------
    prior : prospect.models.priors.Prior
    x : float or ndarray
        Shape ``(..., len(prior))`` or scalar, as ``Prior.__call__`` takes.

    Examples
    --------
    >>> from prospect.models import priors
    >>> float(log_density(priors.TopHat(mini=0.0, maxi=4.0), 1.0)) == -np.log(4.0)
    True
    >>> float(log_density(priors.TopHat(mini=0.0, maxi=4.0), 5.0))
    -inf
    """
    form = _FORMS.get(type(prior).__name__)
    if form is None or type(prior).__module__ != "prospect.models.priors":
        return None
    x = np.asarray(x, dtype=float)
    if x.size == 1 and type(prior).__name__ in _SCALAR:        # one value: Python floats
        lnp = _SCALAR[type(prior).__name__](prior.params, float(x.flat[0]))
        if lnp is not None:
            return np.full(x.shape, lnp) if x.ndim else np.float64(lnp)
    lnp = form(prior.params, x)
    return lnp[()] if lnp is not None and lnp.ndim == 0 else lnp


def _scalar_bounds(params):
    lo, hi = params["mini"], params["maxi"]
    if np.ndim(lo) or np.ndim(hi) or not hi > lo:
        return None
    return float(lo), float(hi)


def _uniform_at(params, x):
    bounds = _scalar_bounds(params)
    if bounds is None:
        return None
    return -math.log(bounds[1] - bounds[0]) if bounds[0] <= x <= bounds[1] else -math.inf


def _log_uniform_at(params, x):
    bounds = _scalar_bounds(params)
    if bounds is None or bounds[0] <= 0:
        return None
    lo, hi = bounds
    return -math.log(x * math.log(hi / lo)) if lo <= x <= hi else -math.inf


def _bounds(params):
    lo, hi = params["mini"], params["maxi"]
    if np.ndim(lo) or np.ndim(hi):
        lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        return (lo, hi) if np.all(hi > lo) else None
    return (float(lo), float(hi)) if hi > lo else None


def _uniform(params, x):
    bounds = _bounds(params)
    if bounds is None:
        return None
    lo, hi = bounds
    return np.where((x >= lo) & (x <= hi), -np.log(hi - lo), -np.inf)


def _log_uniform(params, x):
    bounds = _bounds(params)
    if bounds is None or np.any(np.asarray(bounds[0]) <= 0):
        return None
    lo, hi = bounds
    # inside the support x >= lo > 0: the log of max(x, lo) is the log of x there
    return np.where((x >= lo) & (x <= hi), -np.log(np.maximum(x, lo) * np.log(hi / lo)),
                    -np.inf)


def _normal(params, x):
    mean, sigma = np.asarray(params["mean"], float), np.asarray(params["sigma"], float)
    if np.any(sigma <= 0):
        return None
    z = (x - mean) / sigma
    with np.errstate(divide="ignore", under="ignore"):
        # scipy's order: the pdf, then its log (-inf where the pdf underflows)
        return np.log(np.exp(-z**2 / 2.0) / _SQRT_2PI / sigma)


#: Prospector class name (in prospect.models.priors) -> ln pdf as scipy computes it.
_FORMS = {"Uniform": _uniform, "TopHat": _uniform, "LogUniform": _log_uniform,
          "Normal": _normal}
#: The same at one value with scalar parameters (None: use the array form).
_SCALAR = {"Uniform": _uniform_at, "TopHat": _uniform_at, "LogUniform": _log_uniform_at}
