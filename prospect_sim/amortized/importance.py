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

The likelihood is the classical fit's: without a Prospector ``phot_noise``
model (``build_noise``) and without an outlier mixture (``f_outlier_phot``)
it is the chi-square of the catalogue's uncertainties, evaluated for all draws
at once; otherwise each draw goes through Prospector's own
``prospect.likelihood.lnlike_phot`` with the noise model updated to the draw's
parameters (as ``prospect.fitting.lnprobfn`` does), one draw at a time. The
spectroscopic noise model is not used: the amortised posterior sees
photometry only.
"""

import numpy as np

from ..errors import InferenceError

__all__ = ["Reweighter", "ess", "weighted_quantiles", "log_prior"]

#: Draws predicted per call: the memory of the fast path grows with the rows
#: of one call (~2 kB each), so objects x draws are predicted in pieces.
PREDICT_ROWS = 8192


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
    noise : tuple, optional
        Prospector's ``(spec_noise, phot_noise)`` from the parameter file's
        ``build_noise`` (``Ingredients.noise``); ``phot_noise`` is applied.
    """

    def __init__(self, model, sps, obs, problem, predict=None, noise=None):
        if predict is None:
            try:
                from ..forward import predict_batch as predict
            except ImportError as err:
                raise InferenceError("--importance needs prospect_sim.forward.predict_batch "
                                     f"({err})") from None
        self._predict = predict
        self.model, self.sps, self.obs = model, sps, obs
        self.problem = problem
        self.phot_noise = (noise or (None, None))[1]
        params = getattr(model, "params", {})
        f_out = np.ravel(params.get("f_outlier_phot", 0.0))
        outlier = bool(np.any(f_out != 0)) or "f_outlier_phot" in getattr(model, "free_params", [])
        self.exact = self.phot_noise is not None or outlier
        if self.exact and list(problem["theta_labels"]) != list(model.theta_labels()):
            raise InferenceError(
                "--importance with a phot_noise model or f_outlier_phot needs the checkpoint's "
                f"parameters {problem['theta_labels']} in the model's order "
                f"{list(model.theta_labels())}; train this param file again")

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
        phot = np.concatenate([
            np.asarray(self._predict(self.model, self.sps, self.obs, flat[s:s + PREDICT_ROWS])[0],
                       dtype=float) for s in range(0, len(flat), PREDICT_ROWS)])
        phot = phot.reshape(n_obj, n_draw, -1)
        if self.exact:
            log_l = self._log_like_prospector(theta, phot, flux, unc, missing)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                chi = np.where(missing[:, None, :], 0.0,
                               (flux[:, None, :] - phot) / np.where(missing, 1.0, unc)[:, None, :])
            log_l = -0.5 * (chi ** 2).sum(-1)
        log_w = self._log_prior(flat).reshape(n_obj, n_draw) + log_l - log_q
        return np.where(np.isfinite(log_w), log_w, -np.inf)

    def _log_like_prospector(self, theta, phot, flux, unc, missing):
        """``lnlike_phot`` per draw (N, n), with the noise model and outlier mixture of
        the parameter file, set to each draw's parameters as ``lnprobfn`` does."""
        from prospect.likelihood import lnlike_phot
        model, noise = self.model, self.phot_noise
        out = np.full(theta.shape[:2], -np.inf)
        for i in range(theta.shape[0]):
            obs = {"filters": self.obs["filters"], "maggies": flux[i], "maggies_unc": unc[i],
                   "phot_mask": ~missing[i]}
            for j in range(theta.shape[1]):
                model.set_parameters(theta[i, j])
                vectors = {}
                if noise is not None:
                    noise.update(**model.params)
                    vectors.update(phot_unc=unc[i], phot=flux[i],
                                   filter_names=[f.name for f in self.obs["filters"]])
                f_out = float(np.ravel(model.params.get("f_outlier_phot", 0.0))[0])
                if f_out != 0.0:
                    vectors["nsigma_outlier_phot"] = model.params.get("nsigma_outlier_phot", 10)
                out[i, j] = lnlike_phot(phot[i, j], obs=obs, phot_noise=noise,
                                        f_outlier_phot=f_out, **vectors)
        return out
