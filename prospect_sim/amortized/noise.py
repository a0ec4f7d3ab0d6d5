"""Observational noise models: noiseless model photometry -> a mock observation.

A parameter file may define ``build_obs_noise(obs=..., **run_params)`` that
returns one of these; without it, training uses :class:`FixedNoise` with the
obs's ``maggies_unc``. Every model draws, for noiseless fluxes ``phot``
``(N, B)`` in maggies, a noisy observation

    flux = phot + sigma * eps,   eps ~ N(0, 1)

with per-object, per-band uncertainties ``sigma`` (maggies) and a boolean
missing-band mask drawn with per-band probabilities ``p_missing``. Fluxes may
be negative (non-detections). Missing bands have ``flux = unc = 0``.

The models are numpy only, picklable, and round-trip through
:meth:`NoiseModel.to_config` / :func:`from_config` (plain lists and numbers),
which is how a checkpoint stores them.

>>> import numpy as np
>>> m = DepthNoise(depths=[24.0, 23.5], nsigma=5, floor=0.02)
>>> flux, unc, missing = m.sample(np.full((3, 2), 1e-9), np.random.default_rng(0))
>>> flux.shape, unc.shape, missing.dtype
((3, 2), (3, 2), dtype('bool'))
>>> from_config(m.to_config()).to_config() == m.to_config()
True
"""

import numpy as np

__all__ = ["NoiseModel", "FixedNoise", "DepthNoise", "EmpiricalNoise",
           "from_config", "mag_to_maggies"]


def mag_to_maggies(mag):
    """AB magnitude -> maggies."""
    return 10 ** (-0.4 * np.asarray(mag, dtype=float))


def _per_band(value, n_bands, name, default=None):
    if value is None:
        value = default
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(n_bands, float(arr))
    if arr.shape != (n_bands,):
        raise ValueError(f"{name} has shape {arr.shape}; expected one value per band ({n_bands},)")
    return arr


class NoiseModel:
    """Base class: per-band missing probabilities and the sampling recipe.

    Subclasses implement :meth:`sigma` and :meth:`_params`.

    Parameters
    ----------
    n_bands : int
    p_missing : float or (B,) array, optional
        Probability that a band is missing for an object (independent per band).
    """

    kind = None

    def __init__(self, n_bands, p_missing=None):
        self.n_bands = int(n_bands)
        self.p_missing = _per_band(p_missing, self.n_bands, "p_missing", default=0.0)
        if np.any((self.p_missing < 0) | (self.p_missing >= 1)):
            raise ValueError(f"p_missing must lie in [0, 1); got {self.p_missing.tolist()}")

    def sigma(self, phot, rng):
        """Flux uncertainties (N, B), maggies, for noiseless fluxes ``phot`` (N, B)."""
        raise NotImplementedError

    #: Least flux-independent variance (B,) kept by :meth:`reported`, maggies^2.
    _sky2_min = 0.0

    def reported(self, flux, sigma, phot):
        """The uncertainty a catalogue gives for the observed ``flux`` (N, B).

        A model whose uncertainty grows with the flux reports it for the
        observed flux, as a photometry pipeline does: computed from the
        noiseless ``phot``, the reported uncertainty would tell the network
        the noiseless flux, and the trained posterior would be narrower than
        the likelihood allows. So the drawn variance keeps its part that does
        not depend on the flux, ``sigma^2 - g(phot)`` (at least
        ``_sky2_min``), and adds ``g(flux)``, with ``g`` from
        :meth:`_flux_variance`; without one, ``sigma`` as drawn.
        """
        g_true = self._flux_variance(phot)
        if g_true is None:
            return sigma
        sky2 = np.maximum(sigma ** 2 - g_true, self._sky2_min)
        return np.sqrt(sky2 + self._flux_variance(flux))

    def _flux_variance(self, flux):
        """The variance (N, B) that grows with the flux (N, B), or None if there is none."""
        return None

    def sample(self, phot, rng):
        """Draw noisy observations of noiseless fluxes.

        Parameters
        ----------
        phot : (N, B) array
            Noiseless model fluxes, maggies.
        rng : numpy.random.Generator

        Returns
        -------
        flux : (N, B) float array, maggies (0 where missing)
        unc : (N, B) float array, maggies (0 where missing)
        missing : (N, B) bool array
        """
        phot = np.asarray(phot, dtype=float)
        if phot.ndim != 2 or phot.shape[1] != self.n_bands:
            raise ValueError(f"phot has shape {phot.shape}; expected (N, {self.n_bands})")
        sigma = self.sigma(phot, rng)
        flux = phot + sigma * rng.standard_normal(phot.shape)
        unc = self.reported(flux, sigma, phot)
        missing = rng.random(phot.shape) < self.p_missing
        # an object keeps at least one band: re-instate a random one if all are gone
        empty = missing.all(axis=1)
        if empty.any():
            keep = rng.integers(0, self.n_bands, size=int(empty.sum()))
            missing[np.flatnonzero(empty), keep] = False
        flux[missing] = 0.0
        unc[missing] = 0.0
        return flux, unc, missing

    def typical_sigma(self, phot=None):
        """A representative uncertainty per band (B,), maggies: the softening scale
        of the asinh features."""
        rng = np.random.default_rng(0)
        if phot is None:
            phot = np.zeros((1, self.n_bands))
        return np.median(self.sigma(np.asarray(phot, float), rng), axis=0)

    def _params(self):
        raise NotImplementedError

    def to_config(self):
        """A plain dict (lists and numbers) that :func:`from_config` rebuilds."""
        cfg = {"kind": self.kind, "p_missing": self.p_missing.tolist()}
        cfg.update(self._params())
        return cfg

    def __repr__(self):
        return f"{type(self).__name__}({self.to_config()})"

    def __eq__(self, other):
        return isinstance(other, NoiseModel) and self.to_config() == other.to_config()


class FixedNoise(NoiseModel):
    """Fixed per-band uncertainties, e.g. ``obs['maggies_unc']``.

    Parameters
    ----------
    unc : (B,) array
        Flux uncertainty per band, maggies.
    scatter : float
        Log-normal scatter (dex) of the uncertainty between objects; 0 keeps it fixed.
    p_missing : float or (B,) array, optional
    """

    kind = "fixed"

    def __init__(self, unc, scatter=0.0, p_missing=None):
        unc = np.atleast_1d(np.asarray(unc, dtype=float))
        super().__init__(len(unc), p_missing)
        if not np.all(np.isfinite(unc) & (unc > 0)):
            raise ValueError(f"uncertainties must be finite and > 0 maggies; got {unc.tolist()}")
        self.unc = unc
        self.scatter = float(scatter)

    def sigma(self, phot, rng):
        unc = np.broadcast_to(self.unc, phot.shape).copy()
        if self.scatter > 0:
            unc *= 10 ** (self.scatter * rng.standard_normal(phot.shape))
        return unc

    def _params(self):
        return {"unc": self.unc.tolist(), "scatter": self.scatter}


class DepthNoise(NoiseModel):
    """Survey depths: ``nsigma``-sigma limiting AB magnitudes plus an error floor.

    ``sigma^2 = (10^(-0.4 m_lim) / nsigma)^2 + (floor * max(phot, 0))^2``
    draws the noise; the reported uncertainty has the floor on the observed
    flux instead (:meth:`reported`).
    With ``depth_scatter`` > 0 each object's depth is drawn from
    ``N(m_lim, depth_scatter)`` (mag), so one network serves fields of varied depth.

    Parameters
    ----------
    depths : (B,) array
        Limiting AB magnitudes.
    nsigma : float
        Signal-to-noise ratio that defines the depth (5 for 5-sigma depths).
    floor : float
        Fractional error floor (0.02 for 2 per cent of the flux).
    depth_scatter : float
        Scatter of the depth between objects, mag.
    p_missing : float or (B,) array, optional
    """

    kind = "depth"

    def __init__(self, depths, nsigma=5.0, floor=0.0, depth_scatter=0.0, p_missing=None):
        depths = np.atleast_1d(np.asarray(depths, dtype=float))
        super().__init__(len(depths), p_missing)
        self.depths = depths
        self.nsigma = float(nsigma)
        self.floor = float(floor)
        self.depth_scatter = float(depth_scatter)

    def sigma(self, phot, rng):
        depth = np.broadcast_to(self.depths, phot.shape)
        if self.depth_scatter > 0:
            depth = depth + self.depth_scatter * rng.standard_normal(phot.shape)
        sky = mag_to_maggies(depth) / self.nsigma
        return np.sqrt(sky ** 2 + (self.floor * np.clip(phot, 0, None)) ** 2)

    def _flux_variance(self, flux):
        """``(floor * max(flux, 0))^2``: the floor is reported on the observed flux.

        The noise is drawn with the floor on the noiseless flux; the two
        differ by the floor times the relative noise (under 0.05% of sigma
        for a 2% floor).
        """
        if self.floor == 0:
            return None
        return (self.floor * np.clip(flux, 0, None)) ** 2

    def _params(self):
        return {"depths": self.depths.tolist(), "nsigma": self.nsigma,
                "floor": self.floor, "depth_scatter": self.depth_scatter}


class EmpiricalNoise(NoiseModel):
    """Uncertainty-versus-flux relations taken from a real catalogue.

    For a model flux ``f`` in band ``b``, the uncertainty is that of a
    catalogue object drawn at random among the ``k`` whose flux in band ``b``
    is nearest to ``f``; so the relation keeps the catalogue's scatter
    (varied depths, crowding). At most ``max_rows`` rows per band are kept.

    The noise is drawn with that uncertainty; the one reported is for the
    observed flux (:meth:`reported`). A relation
    ``unc^2 = a + b max(f, 0) + c max(f, 0)^2`` (sky, the source's Poisson
    noise, calibration) is fitted to the catalogue; the drawn variance less
    ``g(f) = b max(f, 0) + (c + floor^2) max(f, 0)^2`` at the noiseless flux
    is the object's own sky term (at least the catalogue's smallest
    variance), to which ``g`` at the observed flux is added. So each object keeps its draw's depth while its reported
    uncertainty, like a pipeline's, depends on the flux it has, not on the
    noiseless one.

    Parameters
    ----------
    flux, unc : list of B arrays
        Catalogue fluxes and uncertainties per band, maggies; non-finite or
        non-positive uncertainties are ignored.
    k : int
        Neighbours to draw from.
    floor : float
        Fractional error floor added in quadrature.
    p_missing : float or (B,) array, optional
        Defaults to the catalogue's fraction of missing values per band.
    """

    kind = "empirical"

    def __init__(self, flux, unc, k=20, floor=0.0, p_missing=None, max_rows=20000, seed=0):
        rng = np.random.default_rng(seed)
        n_bands = len(flux)
        if len(unc) != n_bands:
            raise ValueError(f"got {n_bands} flux columns but {len(unc)} uncertainty columns")
        self._flux, self._unc, frac_missing = [], [], []
        for b in range(n_bands):
            f = np.asarray(flux[b], dtype=float).ravel()
            u = np.asarray(unc[b], dtype=float).ravel()
            ok = np.isfinite(f) & np.isfinite(u) & (u > 0)
            frac_missing.append(1.0 - ok.mean() if ok.size else 1.0)
            f, u = f[ok], u[ok]
            if len(f) < 2:
                raise ValueError(f"band {b}: fewer than 2 usable catalogue rows for the "
                                 "empirical noise model")
            if len(f) > max_rows:
                pick = rng.choice(len(f), size=max_rows, replace=False)
                f, u = f[pick], u[pick]
            order = np.argsort(f)
            self._flux.append(f[order])
            self._unc.append(u[order])
        if p_missing is None:
            p_missing = np.minimum(frac_missing, 0.99)
        super().__init__(n_bands, p_missing)
        self.k = int(k)
        self.floor = float(floor)
        self.max_rows = int(max_rows)
        self.seed = int(seed)
        self._relation = np.array([_fit_relation(f, u) for f, u in zip(self._flux, self._unc)])
        self._sky2_min = np.array([np.min(u) ** 2 for u in self._unc])

    @classmethod
    def from_catalog(cls, path, filter_names, **kwargs):
        """Build from a catalogue file with ``<filter>_flux``/``<filter>_unc`` columns."""
        from .catalog import read_columns
        cols = read_columns(path, [f"{f}_{s}" for f in filter_names for s in ("flux", "unc")])
        return cls([cols[f"{f}_flux"] for f in filter_names],
                   [cols[f"{f}_unc"] for f in filter_names], **kwargs)

    def sigma(self, phot, rng):
        n, n_bands = phot.shape
        out = np.empty_like(phot)
        for b in range(n_bands):
            f, u = self._flux[b], self._unc[b]
            k = min(self.k, len(f))
            centre = np.searchsorted(f, phot[:, b])
            lo = np.clip(centre - k // 2, 0, len(f) - k)
            out[:, b] = u[lo + rng.integers(0, k, size=n)]
        if self.floor > 0:
            out = np.sqrt(out ** 2 + (self.floor * np.clip(phot, 0, None)) ** 2)
        return out

    def _flux_variance(self, flux):
        """``b max(f, 0) + (c + floor^2) max(f, 0)^2`` of the fitted relation, per band."""
        f = np.clip(flux, 0, None)
        return f * (self._relation[:, 1] + (self._relation[:, 2] + self.floor ** 2) * f)

    def _params(self):
        return {"flux": [f.tolist() for f in self._flux], "unc": [u.tolist() for u in self._unc],
                "k": self.k, "floor": self.floor, "max_rows": self.max_rows, "seed": self.seed}


def _fit_relation(flux, unc):
    """Non-negative ``(a, b, c)`` of ``unc^2 ~ a + b f + c f^2``, ``f = max(flux, 0)``.

    Fitted in relative terms (each row's residual divided by its ``unc^2``),
    so faint and bright rows count alike.
    """
    from scipy.optimize import nnls
    f = np.clip(flux, 0, None)
    terms = np.stack([np.ones_like(f), f, f * f], axis=1) / (unc ** 2)[:, None]
    scale = terms.max(axis=0)
    scale[scale == 0] = 1.0          # no positive fluxes: b and c stay 0
    coef, _ = nnls(terms / scale, np.ones(len(f)))
    return coef / scale


_KINDS = {cls.kind: cls for cls in (FixedNoise, DepthNoise, EmpiricalNoise)}


def from_config(cfg):
    """Rebuild a noise model from :meth:`NoiseModel.to_config`."""
    cfg = dict(cfg)
    kind = cfg.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"unknown noise model kind {kind!r}; expected one of {sorted(_KINDS)}")
    return _KINDS[kind](**cfg)


def default_noise(obs):
    """:class:`FixedNoise` from ``obs['maggies_unc']`` (bands masked out of
    ``phot_mask`` are still simulated, so the network can use them when present)."""
    unc = np.asarray(obs.get("maggies_unc"), dtype=float)
    bad = ~(np.isfinite(unc) & (unc > 0))
    if bad.all():
        raise ValueError("obs['maggies_unc'] has no finite positive uncertainty; give the "
                         "param file a build_obs_noise() that returns a noise model")
    if bad.any():
        unc = np.where(bad, np.median(unc[~bad]), unc)
    return FixedNoise(unc)
