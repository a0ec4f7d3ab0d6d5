"""Batched versions of Prospector's non-parametric SFH transforms.

Prospector's ``depends_on`` functions in :mod:`prospect.models.transforms`
take one object's parameters; :mod:`prospect_sim.forward` calls each on a
whole batch when it gives the per-row answer, and row by row otherwise,
which made ``TemplateLibrary["continuity_sfh"]`` simulate at a twentieth of
the parametric rate.  The functions here take ``(N, ...)`` arrays and give
``(N, ...)`` results; :data:`BATCHED` maps each Prospector function to its
batched twin.  :mod:`prospect_sim.forward` still checks every twin against
the per-row original on a probe batch before using it, so a twin that
disagrees is never used.

Shapes: ``logmass``, ``total_mass``, ``logsfr_ratio_young``/``_old`` (N,)
or scalars; ``logsfr_ratios``, ``z_fraction`` (N, K-1); ``agebins``
(K, 2) shared or (N, K, 2), log10(yr) edges.

Example
-------
>>> import numpy as np
>>> from prospect.models import transforms as pt
>>> agebins = np.log10([[1, 1e8], [1e8, 1e9], [1e9, 1e10]])
>>> ratios = np.array([[0.3, -0.2], [0.0, 0.0]])
>>> got = logsfr_ratios_to_masses(logmass=np.array([10.0, 9.0]), logsfr_ratios=ratios,
...                               agebins=agebins)
>>> want = pt.logsfr_ratios_to_masses(logmass=10.0, logsfr_ratios=ratios[0], agebins=agebins)
>>> bool(np.allclose(got[0], want))
True
"""

import numpy as np

__all__ = ["logsfr_ratios_to_masses", "logsfr_ratios_to_agebins",
           "logsfr_ratios_to_masses_flex", "zfrac_to_sfrac", "zfrac_to_masses", "BATCHED"]


def _rows(value, n=None):
    """(N, K) from (N, K), from (N,) (one value per object, K = 1) or one shared (K,) vector.

    ``n`` is the batch size read from another argument (e.g. ``logmass``):
    a 1-d array of that length holds one value per object.
    """
    value = np.asarray(value, dtype=float)
    if value.ndim == 1 and n is not None and n > 1 and len(value) == n:
        return value[:, None]
    return np.atleast_2d(value)


def _size(*values):
    """The batch size of the first argument that has more than one element, or None."""
    for value in values:
        size = np.size(value) if value is not None else 0
        if size > 1:
            return size
    return None


def _widths(agebins):
    """Bin widths in yr: (K,) for shared bins, (N, K) per object."""
    bins = 10**np.asarray(agebins, dtype=float)
    return bins[..., 1] - bins[..., 0]


def logsfr_ratios_to_masses(logmass=None, logsfr_ratios=None, agebins=None, **extras):
    """Masses per bin (N, K) from log SFR ratios of adjacent bins (continuity SFH).

    With ``s_j = 10**clip(r_j, -10, 10)`` and bin widths ``dt``, bin ``i``
    forms a mass proportional to ``dt_i / (dt_0 prod_{j<i} s_j)`` (the
    telescoping form of Prospector's product), scaled to ``10**logmass``.
    """
    ratios = 10**np.clip(_rows(logsfr_ratios, _size(logmass)), -10, 10)
    n = len(ratios)
    cumulative = np.concatenate([np.ones((n, 1)), np.cumprod(ratios, axis=1)], axis=1)
    dt = _widths(agebins)
    coeffs = dt / dt[..., :1] / cumulative
    total = 10**np.asarray(logmass, dtype=float).reshape(-1, 1)
    return total / coeffs.sum(axis=1, keepdims=True) * coeffs


def logsfr_ratios_to_agebins(logsfr_ratios=None, agebins=None, logmass=None, **extras):
    """Per-object bin edges (N, K, 2), log10(yr), with equal mass in the flexible bins."""
    n = _size(logmass, extras.get("logsfr_ratio_young"), extras.get("logsfr_ratio_old"))
    if n is None and np.ndim(agebins) == 3:
        n = np.shape(agebins)[0]
    ratios = 10**np.clip(_rows(logsfr_ratios, n), -10, 10)
    bins = np.asarray(agebins, dtype=float)
    if bins.ndim == 3:
        bins = bins[0]
    lower = 10**bins[0, 1] - 10**bins[0, 0]
    upper = 10**bins[-1, 1] - 10**bins[-1, 0]
    tflex = 10**bins[-1, -1] - upper - lower
    cumulative = np.cumprod(ratios, axis=1)                        # (N, K-3)
    dt1 = tflex / (1.0 + cumulative.sum(axis=1))                   # (N,)
    n = len(ratios)
    edges = np.empty((n, ratios.shape[1] + 4))
    edges[:, 0] = 1.0
    edges[:, 1] = lower
    edges[:, 2] = dt1 + lower
    edges[:, 3:-1] = edges[:, 2:3] + np.cumsum(dt1[:, None] * cumulative, axis=1)
    edges[:, -1] = 10**bins[-1, 1]
    logs = np.log10(edges)
    return np.stack([logs[:, :-1], logs[:, 1:]], axis=-1)


def logsfr_ratios_to_masses_flex(logmass=None, logsfr_ratios=None, logsfr_ratio_young=None,
                                 logsfr_ratio_old=None, **extras):
    """Masses per bin (N, K) of the continuity-flex SFH (Leja et al. 2019)."""
    young = 10**np.clip(np.asarray(logsfr_ratio_young, dtype=float).reshape(-1), -10, 10)
    old = 10**np.clip(np.asarray(logsfr_ratio_old, dtype=float).reshape(-1), -10, 10)
    bins = logsfr_ratios_to_agebins(logsfr_ratios=logsfr_ratios, logmass=logmass,
                                    logsfr_ratio_young=logsfr_ratio_young,
                                    logsfr_ratio_old=logsfr_ratio_old, **extras)
    dt = _widths(bins)                                             # (N, K)
    n_flex = dt.shape[1] - 2
    mbin = 10**np.asarray(logmass, dtype=float).reshape(-1) / (
        young * dt[:, 0] / dt[:, 1] + old * dt[:, -1] / dt[:, -2] + n_flex)
    out = np.repeat(mbin[:, None], dt.shape[1], axis=1)
    out[:, 0] = young * mbin * dt[:, 0] / dt[:, 1]
    out[:, -1] = old * mbin * dt[:, -1] / dt[:, -2]
    return out


def zfrac_to_sfrac(z_fraction=None, **extras):
    """SFR fractions (N, K) from the Dirichlet latent variables (N, K-1)."""
    z = _rows(z_fraction, extras.get("_n"))
    lead = np.concatenate([np.ones((len(z), 1)), np.cumprod(z, axis=1)[:, :-1]], axis=1)
    out = np.empty((len(z), z.shape[1] + 1))
    out[:, :-1] = lead * (1.0 - z)
    out[:, -1] = 1.0 - out[:, :-1].sum(axis=1)
    return _no_negative(out)


def zfrac_to_masses(total_mass=None, z_fraction=None, agebins=None, **extras):
    """Masses per bin (N, K) of the Dirichlet SFH (Leja et al. 2017)."""
    fraction = zfrac_to_sfrac(z_fraction, _n=_size(total_mass)) * _widths(agebins)
    fraction /= fraction.sum(axis=1, keepdims=True)
    return np.asarray(total_mass, dtype=float).reshape(-1, 1) * _no_negative(fraction)


def _no_negative(values):
    """Prospector's rounding guard: tiny negatives become zero, others raise."""
    bad = values < 0
    if bad.any():
        if not np.allclose(values[bad], 0.0, rtol=1e-8):
            raise ValueError("The input z_fractions are returning negative masses!")
        values = np.where(bad, 0.0, values)
    return values


def _registry():
    from prospect.models import transforms as pt
    return {pt.logsfr_ratios_to_masses: logsfr_ratios_to_masses,
            pt.logsfr_ratios_to_agebins: logsfr_ratios_to_agebins,
            pt.logsfr_ratios_to_masses_flex: logsfr_ratios_to_masses_flex,
            pt.zfrac_to_sfrac: zfrac_to_sfrac,
            pt.zfrac_to_masses: zfrac_to_masses}


class _Registry(dict):
    """Prospector function -> batched twin, filled on first use (Prospector imported then)."""

    def get(self, key, default=None):
        if not self:
            self.update(_registry())
        return super().get(key, default)


#: Prospector's transform -> its batched twin.
BATCHED = _Registry()
