r"""Importance sampling of flow draws against the exact likelihood.

For draws :math:`\theta_i \sim q(\theta \mid x)` the weights

.. math:: \log w_i = \log p(\theta_i) + \log \mathcal{L}(x \mid \theta_i) - \log q(\theta_i \mid x),
          \qquad \log \mathcal{L} = -\tfrac12 \sum_{b\ \mathrm{present}}
          \left(\frac{f_b - m_b(\theta_i)}{\sigma_b}\right)^2

(constants that are the same for every draw of an object cancel) turn the
draws into samples of the exact posterior of the parameter file's model;
:math:`m_b` comes from :func:`prospect_sim.forward.predict_batch` with the
same model, sps and obs filters. The effective sample size

.. math:: \mathrm{ESS} = (\sum_i w_i)^2 / \sum_i w_i^2

says how far the flow is from it: a small ESS means the object is outside
what the network learned (flagged in the output).

The likelihood is the chi-square of the catalogue's uncertainties; a
Prospector ``phot_noise`` model from ``build_noise`` is not applied here.
"""

import numpy as np

from ..errors import InferenceError

__all__ = ["Reweighter", "ess", "weighted_quantiles", "log_prior"]


def log_prior(theta, prior, labels):
    """Log prior density (N,) up to a constant for the known Prospector kinds.

    Returns ``None`` when some parameter has a prior kind this does not know.
    """
    out = np.zeros(len(theta))
    for j, label in enumerate(labels):
        p = prior.get(label, {})
        kind, par = p.get("distribution"), p.get("params", {})
        lo, hi = p.get("bounds", [-np.inf, np.inf])
        t = theta[:, j]
        inside = (t >= lo) & (t <= hi)
        if kind in ("TopHat", "Uniform", "FastUniform"):
            term = np.zeros_like(t)
        elif kind in ("Normal", "ClippedNormal", "FastTruncatedNormal"):
            mean, sig = par.get("mean", 0.0), par.get("sigma", 1.0)
            term = -0.5 * ((t - np.asarray(mean)) / np.asarray(sig)) ** 2
        elif kind == "LogUniform":
            with np.errstate(divide="ignore", invalid="ignore"):
                term = -np.log(t)
        else:
            return None
        out += np.where(inside, term, -np.inf)
    return out


def ess(log_w):
    """Effective sample size per row of ``log_w`` (N, n)."""
    m = np.max(log_w, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    w = np.exp(log_w - m)
    s = w.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, s ** 2 / (w ** 2).sum(-1), 0.0)


def weighted_quantiles(x, log_w, qs):
    """Quantiles ``qs`` of draws x (N, n, D) with weights (N, n) -> (len(qs), N, D)."""
    m = np.max(log_w, axis=-1, keepdims=True)
    w = np.exp(log_w - np.where(np.isfinite(m), m, 0.0))
    out = np.full((len(qs),) + (x.shape[0], x.shape[2]), np.nan)
    for i in range(x.shape[0]):
        if not w[i].sum() > 0:
            continue
        for d in range(x.shape[2]):
            order = np.argsort(x[i, :, d])
            cw = np.cumsum(w[i, order])
            cw /= cw[-1]
            out[:, i, d] = x[i, order, d][np.minimum(np.searchsorted(cw, qs), len(cw) - 1)]
    return out


class Reweighter:
    """Exact-likelihood weights for draws of full parameter vectors.

    Parameters
    ----------
    model, sps, obs
        From the same parameter file (Ingredients).
    problem : dict
        The checkpoint's problem (``theta_labels``, ``prior``).
    predict : callable, optional
        ``predict(model, sps, obs, theta (N, D)) -> (phot (N, B) maggies, extras)``;
        default :func:`prospect_sim.forward.predict_batch`.
    """

    def __init__(self, model, sps, obs, problem, predict=None):
        if predict is None:
            try:
                from ..forward import predict_batch as predict
            except ImportError as err:
                raise InferenceError("--importance needs prospect_sim.forward.predict_batch "
                                     f"({err})") from None
        self._predict = predict
        self.model, self.sps, self.obs = model, sps, obs
        self.problem = problem

    def _log_prior(self, theta):
        lp = log_prior(theta, self.problem["prior"], self.problem["theta_labels"])
        if lp is None:  # an unusual prior: ask the model itself, one draw at a time
            lp = np.array([self.model.prior_product(t) for t in theta])
        return lp

    def log_weights(self, theta, log_q, flux, unc, missing):
        """Log weights (N, n).

        Parameters
        ----------
        theta : (N, n, D_full) array, full parameter vectors (conditions included)
        log_q : (N, n) array
        flux, unc : (N, B) maggies; missing : (N, B) bool
        """
        n_obj, n_draw, d = theta.shape
        flat = theta.reshape(-1, d)
        phot, _ = self._predict(self.model, self.sps, self.obs, flat)
        phot = np.asarray(phot, dtype=float).reshape(n_obj, n_draw, -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            chi = np.where(missing[:, None, :], 0.0,
                           (flux[:, None, :] - phot) / np.where(missing, 1.0, unc)[:, None, :])
        log_l = -0.5 * (chi ** 2).sum(-1)
        log_w = self._log_prior(flat).reshape(n_obj, n_draw) + log_l - log_q
        return np.where(np.isfinite(log_w), log_w, -np.inf)
