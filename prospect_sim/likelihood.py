"""Prospector's log-posterior for blocks of parameter vectors, through the batched kernel.

``prospect.fitting.lnprobfn`` costs one ``SpecModel.predict`` per point
(about 1.3-2 ms with the embedded grid); :class:`BatchedLnProb` computes
the same quantity for an (n, D) block in one call of the sps's batched
photometry (microseconds per point), for the samplers that can ask for
many points at once (nautilus, emcee's ``vectorize``) and for
``--importance``::

    lnp = BatchedLnProb(model, obs, sps, noise)(theta)     # (n,) for theta (n, D)

What it computes, row by row, as ``lnprobfn`` does::

    lnp = ln prior(theta) + sum_b ln N(maggies_b | model_b, maggies_unc_b)

over the bands of ``phot_mask``, with Prospector's outlier mixture when
``f_outlier_phot`` is non-zero (each band a mixture of the Gaussian and
one ``nsigma_outlier_phot`` times wider), ``-inf`` outside the prior, and
without the prior for nested samplers (``nested=True``).  The model
photometry comes from the batched kernel, which agrees with
``SpecModel.predict`` to 1e-3 mag; the log-likelihood then differs by
at most ``sum_b |chi_b| * SNR_b * 9.2e-4`` (plus the square of that
shift), the precision the tests check.

Where the batched path cannot give ``lnprobfn``'s value (a spectrum in the
obs, a photometric noise model, an sps without batched photometry, a
model with an emission-line penalty), every row goes through
``lnprobfn`` itself; :attr:`BatchedLnProb.fallback` says why.
"""

import logging

import numpy as np

from .errors import ProspectSimError

__all__ = ["BatchedLnProb", "lnlike_phot", "lnlike_tolerance"]

#: The batched kernel's agreement with ``SpecModel.predict``: mag, and in
#: bands whose blue edge is in the Lyman forest (IGM at bin centres only).
KERNEL_MAG, FOREST_MAG = 1e-3, 0.1

log = logging.getLogger(__name__)


def lnlike_phot(phot, obs, f_outlier=0.0, nsigma_outlier=10.0):
    """Prospector's ``lnlike_phot`` without a noise model, for (n, B) model photometry.

    Parameters
    ----------
    phot : ndarray (n, B)
        Model maggies.
    obs : dict
        ``maggies``, ``maggies_unc`` (B,) and optional boolean ``phot_mask``.
    f_outlier, nsigma_outlier : float or ndarray (n,)
        Prospector's ``f_outlier_phot`` and ``nsigma_outlier_phot``.

    Returns
    -------
    ndarray (n,)

    >>> obs = {"maggies": np.array([1.0, 2.0]), "maggies_unc": np.array([1.0, 1.0])}
    >>> bool(np.isclose(lnlike_phot(np.array([[1.0, 2.0]]), obs)[0], -np.log(2 * np.pi)))
    True
    """
    if obs.get("maggies") is None:
        return np.zeros(len(phot))
    mask = obs.get("phot_mask")
    mask = slice(None) if mask is None else np.asarray(mask, dtype=bool)
    data = np.asarray(obs["maggies"], dtype=float)[mask]
    var = np.asarray(obs["maggies_unc"], dtype=float)[mask]**2
    delta = data[None, :] - np.asarray(phot, dtype=float)[:, mask]
    lnp = -0.5 * (delta**2 / var + np.log(2 * np.pi * var))
    f = np.broadcast_to(np.asarray(f_outlier, dtype=float), (len(phot),))
    if not np.any(f != 0):
        return lnp.sum(axis=1)
    k = np.broadcast_to(np.asarray(nsigma_outlier, dtype=float), (len(phot),))[:, None]
    var_bad = var[None, :] * k**2
    lnp_bad = -0.5 * (delta**2 / var_bad + np.log(2 * np.pi * var_bad))
    with np.errstate(divide="ignore"):
        mixed = np.logaddexp(lnp + np.log1p(-f)[:, None], lnp_bad + np.log(f)[:, None])
    return np.where(f != 0, mixed.sum(axis=1), lnp.sum(axis=1))


def lnlike_tolerance(obs, phot, zred):
    """How far the kernel's precision can move the photometric log-likelihood, (n,).

    A model flux ``m`` off by a fraction ``e`` (:data:`KERNEL_MAG`, or
    :data:`FOREST_MAG` for a band whose blue edge lies below Ly-alpha)
    changes ``-0.5 ((d - m) / s)**2`` by at most ``|d - m| m e / s**2 +
    0.5 (m e / s)**2``; summed over the bands of ``phot_mask``.

    Parameters
    ----------
    obs : dict
        ``filters``, ``maggies``, ``maggies_unc``, optional ``phot_mask``.
    phot : ndarray (n, B)
        Model maggies (either path's).
    zred : ndarray (n,)
    """
    zred = np.broadcast_to(np.asarray(zred, dtype=float).reshape(-1), (len(phot),))
    blue = np.array([f.wavelength[f.transmission > 0].min() for f in obs["filters"]])
    forest = blue[None, :] < 1216.0 * (1 + zred[:, None])
    mag = np.where(forest, FOREST_MAG, KERNEL_MAG)
    shift = phot * (10**(0.4 * mag) - 1.0)
    mask = np.asarray(obs.get("phot_mask", np.ones(len(blue), bool)), dtype=bool)
    sigma = np.asarray(obs["maggies_unc"], dtype=float)
    delta = np.asarray(obs["maggies"], dtype=float) - phot
    bound = np.abs(delta) * shift / sigma**2 + 0.5 * (shift / sigma)**2
    return (bound * mask).sum(axis=1)


class BatchedLnProb:
    """``prospect.fitting.lnprobfn`` for (n, D) blocks of parameter vectors.

    Parameters
    ----------
    model : prospect.models.SpecModel
    obs : dict
        Prospector obs dict.
    sps : sps object
        Batched through ``sps.photometry`` when it has it (``GridSPS``).
    noise : tuple
        Prospector's ``(spec_noise, phot_noise)``.
    nested : bool
        Leave the prior out (nested samplers draw from it): ``lnprobfn(...,
        nested=True)``.

    Attributes
    ----------
    fallback : str or None
        Why every row goes through ``lnprobfn`` one at a time (None: batched).
    n_calls : int
        Rows evaluated so far.
    """

    def __init__(self, model, obs, sps, noise=(None, None), nested=False):
        self.model, self.obs, self.sps = model, obs, sps
        self.noise = tuple(noise) if noise is not None else (None, None)
        self.nested = bool(nested)
        self.fallback = _why_not_batched(model, obs, sps, self.noise)
        self.n_calls = 0
        if self.fallback:
            log.info("log-posterior per object through lnprobfn: %s", self.fallback)

    def __call__(self, theta):
        """ln posterior (or ln likelihood with ``nested``) of each row of ``theta``, (n,)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        self.n_calls += len(theta)
        if self.fallback:
            return self._per_object(theta)
        with np.errstate(divide="ignore", invalid="ignore"):      # log(0) outside the prior
            prior = np.atleast_1d(self.model.prior_product(theta)).astype(float)
            if prior.shape != (len(theta),):        # a model whose prior is not vectorised
                prior = np.array([self.model.prior_product(row) for row in theta], dtype=float)
        out = np.full(len(theta), -np.inf)
        ok = np.isfinite(prior)
        if not ok.any():
            return out
        from . import forward
        rows = theta[ok]
        params = forward.batch_params(self.model, rows)
        try:
            with np.errstate(all="ignore"):
                phot, _ = self.sps.photometry(params, self.obs["filters"])
        except (ProspectSimError, ValueError):
            # some row the batch cannot take (outside a grid): lnprobfn per row
            # gives -inf for exactly those
            out[ok] = self._per_object(rows)
            return out
        lnl = lnlike_phot(phot, self.obs, params.get("f_outlier_phot", 0.0),
                          params.get("nsigma_outlier_phot", 10.0))
        lnl = np.where(np.isfinite(lnl), lnl, -np.inf)
        out[ok] = lnl if self.nested else prior[ok] + lnl
        return out

    def _per_object(self, theta):
        from prospect.fitting import lnprobfn
        return np.array([lnprobfn(row, model=self.model, obs=self.obs, sps=self.sps,
                                  noise=self.noise, nested=self.nested) for row in theta],
                        dtype=float)


def _why_not_batched(model, obs, sps, noise):
    """None when :class:`BatchedLnProb` can batch, else the reason (str)."""
    from . import forward
    if not forward.has_fast_path(sps):
        return f"the sps ({type(sps).__name__}) has no batched photometry"
    if obs.get("spectrum") is not None:
        return "the obs has a spectrum"
    if any(n is not None for n in noise):
        return "the parameter file has a noise model (build_noise)"
    if obs.get("filters") is None or not len(obs["filters"]):
        return "the obs has no photometry"
    if getattr(model, "_ln_eline_penalty", 0.0):
        return "the model has an emission-line penalty"
    return None
