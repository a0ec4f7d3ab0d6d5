"""Star-formation histories as mass-formed weights on the SSP age grid.

Each SSP age ``a_i`` owns the lookback-age bin between the geometric
midpoints of its neighbours (:func:`bin_edges`).  The weight of SSP ``i`` is
the fraction of the total mass formed in that bin, computed exactly from
closed-form cumulative-mass functions, so the weights of one object sum to
1 and a smooth SFH needs no sub-sampling.  A burst (``sfh=0``) interpolates
linearly in log age between the two neighbouring SSPs, as Prospector's
``SSPBasis`` does.

SFHs (FSPS/Prospector names; ``tage``, ``tau`` in Gyr; lookback age ``a``):

- ``sfh=0``: single burst at ``a = tage``.
- ``sfh=1``: tau model, SFR(t) ~ exp(-t/tau) for 0 <= t <= tage.
- ``sfh=4``: delayed tau, SFR(t) ~ t exp(-t/tau).
- ``sfh=3``: non-parametric, mass formed per bin over ``agebins``
  (log10 yr lookback edges, shape (nbin, 2)), constant SFR within a bin,
  as Prospector's ``FastStepBasis``.

All functions are vectorised over N objects.
"""

import math

import numpy as np

from ._compiled import compiled

__all__ = ["bin_edges", "cumulative_fraction", "ssp_weights", "burst_weights",
           "sfr_average", "PARAMETRIC"]

#: SFH codes with a closed-form cumulative mass.
PARAMETRIC = (1, 4)
_LOG_AGE0 = -3.0  # log10(yr) stand-in for an SSP of age 0 (Prospector's mint_log)


def bin_edges(ages):
    """Lookback-age bin edges owned by each SSP.

    Parameters
    ----------
    ages : ndarray of shape (A,)
        SSP ages in yr, increasing (``ages[0]`` may be 0).

    Returns
    -------
    edges : ndarray of shape (A + 1,)
        yr: 0, geometric midpoints between neighbouring ages (the linear
        midpoint next to an age of 0), and the oldest age.
    """
    ages = np.asarray(ages, dtype=float)
    inner = np.sqrt(ages[:-1] * ages[1:])
    inner = np.where(ages[:-1] > 0, inner, 0.5 * ages[1:])
    return np.concatenate([[0.0], inner, [ages[-1]]])


#: Below this ``a``, ``expm1(a)`` is summed as its series (to a^11/11!:
#: full double precision); above it, ``exp(a - T) - exp(-T)`` loses at most
#: one digit to cancellation.
_SERIES_MAX = 0.1


@compiled
def _exponents(edges, rate, big_t, out):
    """``out[n, i] = a - T`` with ``a = min(edges[i] rate[n], T[n])``; ``edges`` (1 or N, E)."""
    shared = edges.shape[0] == 1
    for n in range(out.shape[0]):
        e, r, t, row = edges[0 if shared else n], rate[n], big_t[n], out[n]
        for i in range(row.shape[0]):
            row[i] = min(e[i] * r, t) - t


@compiled
def _tails(delayed, edges, rate, big_t, scale, x):
    """In place, ``x = exp(a - T)`` (N, E) becomes ``scale [P(T) - P(T - a)]``.

    ``a = min(edges rate, T)`` as in :func:`_exponents`.  ``P = P2``
    (delayed tau) or ``P1`` (tau model): the mass formed in the last ``a``
    (units of tau) of a history ``T`` long, unnormalised:
    ``exp(-T) [(1 + T - a) expm1(a) - a]`` or ``exp(-T) expm1(a)``, never
    overflowing.  The one exponential per element comes from NumPy's
    vectorised ``exp`` beforehand (scalar ones here cost 5-10x more).
    """
    shared = edges.shape[0] == 1
    for n in range(x.shape[0]):
        e, r, t, c, row = edges[0 if shared else n], rate[n], big_t[n], scale[n], x[n]
        e_t = math.exp(-t)
        for i in range(row.shape[0]):
            ai = min(e[i] * r, t)
            series = ai * (1.0 + ai * (1 / 2 + ai * (1 / 6 + ai * (1 / 24 + ai * (
                1 / 120 + ai * (1 / 720 + ai * (1 / 5040 + ai * (1 / 40320 + ai * (
                    1 / 362880 + ai * (1 / 3628800 + ai / 39916800))))))))))
            d = e_t * series if ai < _SERIES_MAX else row[i] - e_t    # exp(-T) expm1(a)
            row[i] = c * ((1.0 + t - ai) * d - ai * e_t if delayed else d)


def _parametric_cumulative(delayed, edges, rate, big_t, scale):
    """``scale [P(T) - P(T - a)]`` (N, E) with ``a = min(edges rate, T)``: three passes."""
    edges = np.ascontiguousarray(np.atleast_2d(edges), dtype=float)
    x = np.empty((len(big_t), edges.shape[1]))
    _exponents(edges, rate, big_t, x)
    np.exp(x, out=x)
    _tails(delayed, edges, rate, big_t, scale, x)
    return x


def _p2(x):
    """Regularised lower incomplete gamma P(2, x), accurate at small x."""
    x = np.asarray(x, dtype=float)
    series = x * x * (0.5 - x * (1.0 / 3.0 - x * (0.125 - x / 30.0)))
    with np.errstate(over="ignore"):
        direct = -np.expm1(-x) - x * np.exp(-x)
    return np.where(x < 1e-2, series, direct)


def cumulative_fraction(sfh, edges, tage=None, tau=None, agebins=None, bin_mass=None):
    """Fraction of the mass formed at lookback ages below each edge.

    Parameters
    ----------
    sfh : int
        1, 4 (parametric) or 3 (non-parametric).
    edges : ndarray of shape (E,) or (N, E)
        Lookback ages in yr.
    tage, tau : ndarray of shape (N,)
        Gyr (sfh 1 and 4).
    agebins : ndarray of shape (N, nbin, 2)
        log10(yr) lookback edges (sfh 3).
    bin_mass : ndarray of shape (N, nbin)
        Mass formed per bin (sfh 3), any units.

    Returns
    -------
    ndarray of shape (N, E)
        In [0, 1]; 1 at and beyond the oldest star.
    """
    edges = np.atleast_2d(edges)
    if sfh in PARAMETRIC:
        rate = 1.0 / (np.asarray(tau, dtype=float) * 1e9)              # 1/tau in 1/yr
        big_t = np.asarray(tage, dtype=float) * 1e9 * rate
        total = _p2(big_t) if sfh == 4 else -np.expm1(-big_t)
        return _parametric_cumulative(sfh == 4, edges, rate, big_t, 1.0 / total)
    if sfh == 3:
        lo, hi = 10**agebins[..., 0], 10**agebins[..., 1]          # (N, nbin)
        frac = (edges[:, :, None] - lo[:, None, :]) / (hi - lo)[:, None, :]
        m = np.asarray(bin_mass, dtype=float)
        total = m.sum(axis=1, keepdims=True)
        return np.einsum("neb,nb->ne", np.clip(frac, 0.0, 1.0), m) / total
    raise ValueError(f"no cumulative mass for sfh={sfh}")


def burst_weights(ages, tage):
    """Weights of a single burst at ``tage``, linear in log age.

    Parameters
    ----------
    ages : ndarray of shape (A,)
        SSP ages in yr.
    tage : ndarray of shape (N,)
        Gyr, within [0, ages[-1] / 1e9].

    Returns
    -------
    ndarray of shape (N, A)
        Two non-zero entries per row summing to 1.
    """
    logage = np.log10(np.maximum(ages, 10**_LOG_AGE0))
    logage[ages <= 0] = _LOG_AGE0
    t = np.log10(np.maximum(np.asarray(tage, dtype=float) * 1e9, 10**_LOG_AGE0))
    hi = np.clip(np.searchsorted(logage, t, side="right"), 1, len(ages) - 1)
    frac = np.clip((t - logage[hi - 1]) / (logage[hi] - logage[hi - 1]), 0.0, 1.0)
    w = np.zeros((len(t), len(ages)))
    rows = np.arange(len(t))
    w[rows, hi - 1] = 1.0 - frac
    w[rows, hi] += frac
    return w


def ssp_weights(sfh, ages, edges, tage=None, tau=None, agebins=None, bin_mass=None,
                t_young=None):
    """Mass-formed weight of every SSP, and the part formed more recently than ``t_young``.

    Parameters
    ----------
    sfh : int
        0, 1, 3 or 4.
    ages, edges : ndarray of shape (A,), (A + 1,)
        SSP ages and bin edges in yr (:func:`bin_edges`).
    tage, tau, agebins, bin_mass
        As :func:`cumulative_fraction` (``tage`` also for sfh 0).
    t_young : ndarray of shape (N,) or None
        yr; stars younger than this get the extra ``dust1`` attenuation.

    Returns
    -------
    weights : ndarray of shape (N, A)
        Fraction of the mass formed owned by each SSP; rows sum to 1.
    young : ndarray of shape (N, A) or None
        The part of ``weights`` formed at lookback ages below ``t_young``.
    """
    if sfh == 0:
        w = burst_weights(ages, tage)
        young = None
        if t_young is not None:
            young = w * (np.asarray(tage, dtype=float) * 1e9 < t_young)[:, None]
        return w, young
    # no mass is older than the oldest star: the bins beyond get weight 0
    oldest = (np.max(tage, initial=0.0) * 1e9 if sfh in PARAMETRIC
              else np.max(10**np.asarray(agebins)[..., 1], initial=0.0))
    used = min(int(np.searchsorted(edges, oldest)) + 1, len(edges))
    n = len(tage) if sfh in PARAMETRIC else len(bin_mass)
    w = np.empty((n, len(ages)))
    _differences(cumulative_fraction(sfh, edges[:used], tage=tage, tau=tau, agebins=agebins,
                                     bin_mass=bin_mass), w)
    young = None
    if t_young is not None:
        young = np.zeros_like(w)
        clipped = np.minimum(edges[None, :used], np.asarray(t_young, dtype=float)[:, None])
        cy = cumulative_fraction(sfh, clipped, tage=tage, tau=tau, agebins=agebins,
                                 bin_mass=bin_mass)
        young[:, :used - 1] = np.diff(cy, axis=1)
    return w, young


def sfr_average(sfh, timescale, tage=None, tau=None, agebins=None, bin_mass=None):
    """Fraction of the mass formed per yr, averaged over the last ``timescale`` yr.

    Multiply by the total mass formed for Msun/yr.

    Returns
    -------
    ndarray of shape (N,)
        1/yr.
    """
    if sfh == 0:
        return np.where(np.asarray(tage) * 1e9 <= timescale, 1.0 / timescale, 0.0)
    n = len(tage) if tage is not None else len(bin_mass)
    edge = np.full((n, 1), float(timescale))
    return cumulative_fraction(sfh, edge, tage=tage, tau=tau, agebins=agebins,
                               bin_mass=bin_mass)[:, 0] / timescale


@compiled
def _differences(cum, out):
    """``out[:, :E-1] = diff(cum)`` and zero beyond, for (N, E) ``cum`` and (N, A) ``out``."""
    n_diff = cum.shape[1] - 1
    for n in range(out.shape[0]):
        c, row = cum[n], out[n]
        for i in range(n_diff):
            row[i] = c[i + 1] - c[i]
        for i in range(n_diff, row.shape[0]):
            row[i] = 0.0
