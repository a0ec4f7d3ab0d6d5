"""``--nautilus``: importance nested sampling (Lange 2023) on the batched log-likelihood.

nautilus proposes points in batches from neural-network-guided bounds, so
its likelihood calls go through :class:`prospect_sim.likelihood.BatchedLnProb`
(``nested=True``: the prior enters through the unit-cube transform,
:func:`prospect_sim.forward.prior_transform`, also batched) a whole batch
at a time.  With ``--workers N`` or under ``mpiexec`` each batch is split
over the workers.  The run is checkpointed to
``BASE_nautilus_checkpoint.h5`` as it goes (nautilus's own file), so
``--resume`` continues an interrupted fit; the finished fit is written as
Prospector's results file ``BASE_nautilus.h5`` (``results_from(path,
dangerous=False)`` reads chain, weights, lnlikelihood, logz) by
:func:`prospect_sim.fit.run`.

Flags (group ``nautilus``): ``--nautilus_nlive`` (live points),
``--nautilus_neff`` (effective sample size to reach),
``--nautilus_flive`` (evidence fraction left in the live set when the
exploration stops), ``--nautilus_nbatch`` (points per likelihood call),
``--nautilus_nnetworks`` and ``--nautilus_discard_exploration``.
"""

import logging
import time

import numpy as np

from . import pool as _pool
from .errors import FitError

__all__ = ["add_arguments", "run_sampler"]

log = logging.getLogger(__name__)


def add_arguments(parser):
    """The ``--nautilus`` flag and its group (imports nothing heavy)."""
    group = parser.add_argument_group("nautilus (--nautilus)")
    group.add_argument("--nautilus", action="store_true",
                       help="fit with the nautilus importance nested sampler, batched "
                            "likelihood -> BASE_nautilus.h5 (--resume continues)")
    group.add_argument("--nautilus_nlive", type=int, default=1000,
                       help="live points (nautilus's n_live)")
    group.add_argument("--nautilus_neff", type=float, default=10000,
                       help="effective posterior sample size to reach (n_eff)")
    group.add_argument("--nautilus_flive", type=float, default=0.01,
                       help="evidence fraction in the live set that ends the exploration "
                            "(f_live)")
    group.add_argument("--nautilus_nbatch", type=int, default=None,
                       help="points per likelihood call (None: nlive / 2, a multiple of the "
                            "workers)")
    group.add_argument("--nautilus_nnetworks", type=int, default=1,
                       help="neural networks per bound (n_networks; nautilus's own default "
                            "is 4: training them, not the likelihood, is most of the time)")
    group.add_argument("--nautilus_discard_exploration", action="store_true",
                       help="drop the exploration-phase points (unbiased posterior and "
                            "evidence, at a cost in sample size)")


class _Transform:
    """The model's prior transform for (n, D) unit-cube blocks."""

    def __init__(self, model):
        self.model = model

    def __call__(self, u):
        from . import forward
        return forward.prior_transform(self.model, np.atleast_2d(u))


def _chunk_lnlike(theta):
    """ln likelihood of an (n, D) block on this process's ingredients (a worker task)."""
    from .likelihood import BatchedLnProb
    ing = _pool.ingredients()
    lnl = _LNLIKE.get(id(ing))
    if lnl is None:
        _LNLIKE.clear()
        lnl = _LNLIKE[id(ing)] = BatchedLnProb(ing.model, ing.obs, ing.sps, ing.noise,
                                               nested=True)
    return lnl(theta)


_LNLIKE = {}          # this process's batched likelihood, per ingredients


def run_sampler(ingredients, workpool, checkpoint, run_params):
    """Run nautilus to ``--nautilus_neff``; Prospector-style results (dynesty's keys) and seconds.

    Parameters
    ----------
    ingredients : Ingredients
    workpool : pool or None
        Batches are split over its workers (``map``, ``size``).
    checkpoint : str
        nautilus's file: continued with ``--resume``, started afresh otherwise.
    run_params : dict
    """
    try:
        from nautilus import Sampler
    except ImportError as err:
        raise FitError("--nautilus needs the nautilus sampler: pip install nautilus-sampler"
                       ) from err
    from .likelihood import BatchedLnProb
    rp = run_params
    model = ingredients.model
    if model.ndim < 2:
        raise FitError(f"--nautilus needs at least 2 free parameters, the model has "
                       f"{model.ndim}; use --dynesty")
    size = getattr(workpool, "size", 1) if workpool is not None else 1
    nlive = int(rp.get("nautilus_nlive") or 1000)
    nbatch = rp.get("nautilus_nbatch") or max(100, nlive // 2)
    nbatch = int(-(-int(nbatch) // size) * size)
    if workpool is None:
        likelihood = BatchedLnProb(model, ingredients.obs, ingredients.sps, ingredients.noise,
                                   nested=True)
        if likelihood.fallback:
            log.warning("nautilus: likelihood per object (%s): slow", likelihood.fallback)
    else:
        likelihood = _chunk_lnlike
    resume = bool(rp.get("resume"))
    sampler = Sampler(_Transform(model), likelihood, n_dim=model.ndim, n_live=nlive,
                      n_batch=nbatch, n_networks=int(rp.get("nautilus_nnetworks") or 1),
                      vectorized=True, pass_dict=False,
                      pool=None if workpool is None else (workpool, None),
                      seed=int(rp.get("seed", 0)), filepath=checkpoint, resume=resume)
    t0 = time.time()
    sampler.run(f_live=float(rp.get("nautilus_flive") or 0.01),
                n_eff=float(rp.get("nautilus_neff") or 10000),
                discard_exploration=bool(rp.get("nautilus_discard_exploration")),
                verbose=not rp.get("quiet"))
    seconds = time.time() - t0
    return _results(sampler), seconds


def _results(sampler):
    """The finished run as the dict of dynesty's keys that Prospector's writer takes."""
    points, log_w, log_l = sampler.posterior()
    log_z = float(sampler.log_z)
    keep = np.isfinite(log_w)
    points, log_w, log_l = points[keep], log_w[keep], log_l[keep]
    norm = np.logaddexp.reduce(log_w)
    n_like = int(sampler.n_like)
    return {"samples": points, "logwt": log_w - norm + log_z, "logl": log_l,
            "logz": np.array([log_z]), "logzerr": np.array([np.nan]),
            "information": np.array([np.nan]), "logvol": np.full(len(points), np.nan),
            "eff": np.array([100.0 * float(sampler.n_eff) / max(n_like, 1)]),
            "niter": np.array([len(points)]), "samples_id": np.arange(len(points)),
            "ncall": np.array([n_like]), "n_eff": float(sampler.n_eff)}
