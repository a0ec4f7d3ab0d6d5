"""``--dynesty``: Prospector's dynesty options through dynesty's ``run_nested``.

dynesty's ``DynamicNestedSampler`` runs with exactly the options,
likelihood, stopping and weight functions of Prospector's
``run_dynesty_sampler``, but through ``run_nested`` so that dynesty's own
checkpointing (``BASE_dynesty_checkpoint.pkl``, every ``--checkpoint_every``
seconds) lets ``--resume`` continue an interrupted run.  ``walks`` is passed
only to the samplers that use it.
"""

import logging
import os
import time
from pathlib import Path

import numpy as np

from . import pool as _pool
from .errors import FitError

__all__ = ["run_dynesty"]

log = logging.getLogger(__name__)

class _LnProb:
    """Prospector's ``lnprobfn(theta, nested=True)`` on this process's ingredients.

    Pickles to a few bytes (dynesty sends it with every task and saves it in
    every checkpoint); it resolves obs, model, sps and noise in the process
    that calls it.
    """

    def __call__(self, theta):
        from prospect.fitting import lnprobfn
        ing = _pool.ingredients()
        return lnprobfn(theta, obs=ing.obs, model=ing.model, sps=ing.sps,
                        noise=ing.noise, nested=True)


class _PriorTransform:
    """``model.prior_transform(u)`` of this process's model (pickles to a few bytes).

    Through :func:`prospect_sim.forward.prior_transform`: the same values
    (its closed forms are used only where they reproduce the priors' own
    transform), 8 instead of 144 microseconds per point for the demo.
    """

    def __call__(self, u):
        from . import forward
        return forward.prior_transform(_pool.ingredients().model, np.asarray(u)[None, :])[0]


def _walks(kw):
    """``walks`` for dynesty: only for the samplers that use it (no warning otherwise)."""
    method = kw.get("nested_sample", "unif")
    return kw.get("nested_walks", 25) if method in ("rwalk", "auto") else None


def run_dynesty(ingredients, workpool, checkpoint, rp, kw):
    """Prospector's ``run_dynesty_sampler`` options through dynesty's ``run_nested``.

    Returns dynesty's results and the sampling wall time (s); ``kw`` are the
    ``fit_model`` keyword arguments (:func:`prospect_sim.fit._fit_kwargs`).
    """
    import dynesty
    from dynesty.dynamicsampler import stopping_function, weight_function
    from dynesty.dynamicsampler import DynamicSamplerStatesEnum
    queue_size = kw["queue_size"]
    if workpool is None and queue_size > 1:
        # --queue_size N without workers: the same proposals as with workers, in turn here
        workpool = _pool.SerialPool()
    resume = bool(rp.get("resume")) and checkpoint is not None and Path(checkpoint).exists()
    if resume:
        log.info("resuming dynesty from %s", checkpoint)
        try:
            sampler = dynesty.DynamicNestedSampler.restore(checkpoint, pool=workpool)
        except Exception as err:
            raise FitError(f"cannot restore dynesty checkpoint {checkpoint} "
                           f"({type(err).__name__}: {err}); pass --overwrite to start "
                           f"again") from err
        for s in (sampler, getattr(sampler, "sampler", None),
                  getattr(sampler, "batch_sampler", None)):
            if s is not None:
                s.queue_size = queue_size
        if sampler.internal_state == DynamicSamplerStatesEnum.RUN_DONE:
            return sampler.results, 0.0
    else:
        if checkpoint is not None and Path(checkpoint).exists():
            os.remove(checkpoint)      # --overwrite: start again
        sampler = dynesty.DynamicNestedSampler(
            _LnProb(), _PriorTransform(), ingredients.model.ndim,
            bound=kw.get("nested_bound", "multi"),
            sample=kw.get("nested_sample", "unif"),
            walks=_walks(kw),
            bootstrap=kw.get("nested_bootstrap", 0),
            update_interval=kw.get("nested_update_interval", 0.6),
            pool=workpool, queue_size=queue_size, use_pool=kw.get("use_pool", {}),
            rstate=np.random.default_rng(rp.get("seed", 0)))
    t0 = time.time()
    sampler.run_nested(
        nlive_init=kw.get("nested_nlive_init", 100),
        dlogz_init=kw.get("nested_dlogz_init", 0.02),
        maxcall_init=kw.get("nested_maxcall_init"),
        maxiter_init=kw.get("nested_maxiter_init"),
        nlive_batch=kw.get("nested_nlive_batch", 100),
        maxbatch=kw.get("nested_maxbatch"),
        maxiter_batch=kw.get("nested_maxiter_batch"),
        maxcall_batch=kw.get("nested_maxcall_batch"),
        maxcall=kw.get("nested_maxcall"),
        maxiter=kw.get("nested_maxiter"),
        use_stop=kw.get("nested_use_stop", True),
        wt_function=weight_function,
        wt_kwargs=kw.get("nested_weight_kwargs", {"pfrac": 1.0}),
        stop_function=stopping_function,
        stop_kwargs={"target_n_effective": kw.get("nested_target_n_effective", 10000)},
        save_bounds=False,
        print_progress=bool(kw.get("print_progress", True)),
        checkpoint_file=checkpoint,
        checkpoint_every=float(rp.get("checkpoint_every") or 60.0),
        resume=resume)
    return sampler.results, time.time() - t0
