"""Classical fits: ``--dynesty``, ``--emcee``, ``--optimize`` through Prospector.

The posterior is Prospector's own ``prospect.fitting.lnprobfn`` on the
ingredients of the parameter file, and results are written with
``prospect.io.write_results.write_hdf5``, so
``prospect.io.read_results.results_from(path, dangerous=False)`` reads them
back (chain, weights, lnprobability, obs, model parameters, run_params).

- ``--emcee`` and ``--optimize`` run ``prospect.fitting.fit_model`` with the
  pool. ``--restart_from FILE`` continues an emcee chain from its last
  walker positions (read without executing stored code).  Without workers,
  emcee's walkers are evaluated together, half the ensemble per call of
  the batched posterior (:class:`BatchMap`, :mod:`prospect_sim.likelihood`),
  where the parameter file allows it.
- ``--dynesty`` runs dynesty's ``DynamicNestedSampler`` with exactly the
  options of Prospector's ``run_dynesty_sampler``, resumable
  (:mod:`prospect_sim.dynesty_fit`).  ``--optimize --dynesty`` optimises
  first, as Prospector does.

Beyond Prospector, the ``sampling`` group also holds derived quantities per
sample (read back as top-level keys of the results dict): ``mfrac``
(surviving / formed stellar mass), ``total_mass`` (Msun formed) and
``stellar_mass`` (surviving stellar mass, Msun = ``total_mass * mfrac``).

Photometry-only fits compute no model spectrum (:func:`prepare`; see
:mod:`prospect_sim.sps._compat`): with the embedded grid each likelihood
call predicts the photometry through the batched kernel at N = 1 (the
point path, within 1e-3 mag of Prospector's own code, 4-7x faster:
``bench/bench_point.py``), otherwise it skips the spectrum Prospector
1.4 smooths and then discards.  The best-fit spectrum in the results file
is still Prospector's own, smoothed one.

Prospector 1.4.1 quirks handled here: ``write_hdf5`` cannot store the
optimizer results (a unicode dtype h5py rejects), so they are written with a
byte-string message field under the same name; ``fit_model``'s emcee restart
path calls ``restart_emcee_sampler`` without importing it; ``write_hdf5``'s
two warnings on every file (model parameters pickled, no git version) are
not shown.
"""

import contextlib
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

from . import outputs
from .dynesty_fit import run_dynesty
# dynesty checkpoints written before the runner moved name these two here
from .dynesty_fit import _LnProb, _PriorTransform  # noqa: F401
from .samplers import SAMPLERS, fit_kind
from . import pool as _pool
from .errors import FitError, ProspectSimError
from .sps import _compat

__all__ = ["run", "prepare", "sample", "derived_quantities", "fit_kind", "BatchMap", "DERIVED"]

log = logging.getLogger(__name__)

#: Derived quantities stored per sample in the ``sampling`` group.
DERIVED = ("mfrac", "total_mass", "stellar_mass")

#: run_params keys that fit_model takes as positional arguments or that we set.
_NOT_FIT_KWARGS = ("obs", "model", "sps", "sps_library", "noise", "lnprobfn", "pool", "queue_size",
                   "optimize", "emcee", "dynesty", "hfile", "initial_positions")


def queue_size(run_params, n_workers):
    """How many new points dynesty proposes at once (its ``queue_size``).

    ``--queue_size`` when given (without workers too: the proposals are then
    evaluated in turn, the same dynesty run as with workers); otherwise 1
    without workers and, with M workers, ``max(M, min(4 M, K // 8))`` for
    K = ``nested_nlive_init`` (Prospector's default 100). Points proposed together all sit above the
    same likelihood threshold, so q of them advance the run by K ln(1 + q/K)
    iterations rather than q: 96% of q for q = K/8 (Handley et al. 2015;
    dynesty docs, "Parallelization"). In exchange each worker gets a few
    tasks in a row instead of one per round trip, and the master's
    bookkeeping and messages are paid once per q points
    (``bench/bench_mpi_fit.py`` measures both). emcee and the optimizers
    ignore it.
    """
    if run_params.get("queue_size") is not None:
        return int(run_params["queue_size"])
    if n_workers <= 1:
        return 1
    nlive = int(run_params.get("nested_nlive_init") or 100)
    return max(n_workers, min(4 * n_workers, nlive // 8))


def prepare(ingredients):
    """On every process, right after the build: skip the unused model spectrum."""
    _compat.set_photometry_only(ingredients.model, ingredients.obs)


def run(ingredients, pool):
    """Fit the obs of ``ingredients`` and write Prospector's results HDF5.

    Parameters
    ----------
    ingredients : prospect_sim.paramfile.Ingredients
    pool : SerialPool or ProcessPool or MPIWorkPool
        Likelihood calls are spread over it (dynesty: :func:`queue_size` at once).

    Returns
    -------
    str
        Path of the results file (``outputs.path_for(run_params, kind)``).
    """
    rp = ingredients.run_params
    kind = fit_kind(rp)
    path = outputs.path_for(rp, kind)
    resumable = SAMPLERS[kind].resumes
    outputs.check_writable(path, rp, resumable=resumable)
    workpool = pool if getattr(pool, "size", 1) > 1 else None
    fit_kwargs = _fit_kwargs(rp, workpool, getattr(pool, "size", 1))
    # Prospector's emcee and minimizer draw from numpy's global generator.
    np.random.seed(rp.get("seed", 0))

    checkpoint = None
    if resumable:
        checkpoint = outputs.path_for(rp, kind + "_checkpoint")
        if rp.get("resume") and Path(path).exists() and not Path(checkpoint).exists():
            log.info("%s is complete and there is nothing to resume", path)
            return path
        if Path(checkpoint).exists() and not (rp.get("resume") or rp.get("overwrite")):
            raise FitError(f"found {checkpoint} from an interrupted {kind} run; pass "
                           f"--resume to continue it or --overwrite to start again")
        if Path(checkpoint).exists() and not rp.get("resume"):
            os.remove(checkpoint)      # --overwrite: start again

    if rp.get("optimize") and rp.get("min_method", "lm") == "lm":
        ndata, ndim = int(ingredients.obs.get("ndof", 0)), ingredients.model.ndim
        if ndata < ndim:
            raise FitError(f"--optimize with --min_method lm (Levenberg-Marquardt) needs at "
                           f"least as many data points as free parameters, got {ndata} "
                           f"for {ndim}; pass --min_method powell")

    optres, topt = None, 0.0
    initial_center = []
    if kind == "emcee":
        _fix_prospector_restart()
        if rp.get("restart_from"):
            fit_kwargs["initial_positions"] = _restart_positions(rp["restart_from"],
                                                                  ingredients.model)
        batch = BatchMap.for_fit(ingredients) if workpool is None else None
        if batch is not None and rp.get("optimize"):
            # the minimizer maps its starts over the pool: optimise first without it
            out = _fit_model(ingredients, optimize=True, **fit_kwargs)
            optres, topt = out["optimization"]
        emcee_kwargs = dict(fit_kwargs, pool=batch or workpool)
        out = _fit_model(ingredients, optimize=bool(rp.get("optimize")) and batch is None,
                         emcee=True, **emcee_kwargs)
        if batch is None:
            optres, topt = out["optimization"]
        sampler, tsample = out["sampling"]
        initial_center = ingredients.model.theta.copy()
    else:
        if rp.get("optimize"):
            out = _fit_model(ingredients, optimize=True, **fit_kwargs)
            optres, topt = out["optimization"]
        sampler, tsample = None, 0.0
        if kind == "dynesty":
            sampler, tsample = run_dynesty(ingredients, workpool, checkpoint, rp, fit_kwargs)
        elif SAMPLERS[kind].runner:
            sampler, tsample = _runner(SAMPLERS[kind].runner)(ingredients, workpool,
                                                              checkpoint, rp)

    _write(path, ingredients, sampler, optres, tsample, topt, pool, initial_center)
    if checkpoint is not None and Path(checkpoint).exists():
        os.remove(checkpoint)
    return path


def _fit_kwargs(rp, workpool, n_workers):
    """The keyword arguments of Prospector's ``fit_model`` (and our dynesty runner) for ``rp``."""
    kwargs = {k: v for k, v in rp.items() if k not in _NOT_FIT_KWARGS}
    kwargs.update(pool=workpool, queue_size=queue_size(rp, n_workers))
    if rp.get("quiet"):
        kwargs.update(verbose=False, print_progress=False)
    return kwargs


def sample(ingredients, kind, run_params):
    """Fit one object serially with the sampler ``kind``, quietly; for catalogue fits.

    The process's ingredients must be ``ingredients`` (see
    :func:`prospect_sim.pool.substituted`): dynesty's likelihood reads them
    there.  Every call starts from the model's initial values and the run's
    seed, so an object's result does not depend on which process fitted
    it or what it fitted before.  Nothing is written and nothing resumes.

    Returns
    -------
    dict
        ``samples`` (n, D), ``log_weights`` (n,) normalised to sum 1 in
        probability, ``logz`` (float; NaN for emcee and the optimizer),
        ``ncall`` (likelihood calls), ``seconds`` (sampling wall time).
    """
    rp = dict(run_params, resume=False, quiet=True, verbose=False)
    kw = _fit_kwargs(rp, None, 1)
    # the same start for every object, whatever this process fitted before:
    # the model's initial values, numpy's global seed (Prospector's emcee, minimizer)
    ingredients.model.set_parameters(ingredients.model.initial_theta)
    np.random.seed(rp.get("seed", 0))
    t0 = time.time()
    if kind in ("nautilus", "dynesty"):
        if kind == "dynesty":
            res, _ = run_dynesty(ingredients, None, None, rp, kw)
            samples, logwt = res.samples, res.logwt
            logz, ncall = float(res.logz[-1]), int(np.sum(res.ncall))
        else:
            res, _ = _runner(SAMPLERS[kind].runner)(ingredients, None, None, rp)
            samples, logwt = res["samples"], res["logwt"]
            logz, ncall = float(res["logz"][0]), int(res["ncall"][0])
        log_weights = logwt - np.logaddexp.reduce(logwt)
    elif kind == "emcee":
        batch = BatchMap.for_fit(ingredients)
        if rp.get("optimize"):
            _fit_model(ingredients, optimize=True, **kw)
        out = _fit_model(ingredients, emcee=True, **dict(kw, pool=batch))
        sampler = out["sampling"][0]
        samples = sampler.get_chain(flat=True)
        log_weights = np.full(len(samples), -np.log(len(samples)))
        logz = np.nan
        ncall = batch.lnp.n_calls if batch is not None else len(samples)
    elif kind == "optimize":
        out = _fit_model(ingredients, optimize=True, **kw)
        samples = ingredients.model.theta.copy()[None, :]      # fit_model set the best
        log_weights, logz = np.zeros(1), np.nan
        ncall = int(sum(int(getattr(r, "nfev", 0)) for r in out["optimization"][0]))
    else:
        raise FitError(f"unknown sampler {kind!r}")
    return {"samples": np.asarray(samples, dtype=float), "log_weights": log_weights,
            "logz": logz, "ncall": ncall, "seconds": time.time() - t0}


def _runner(spec):
    """The function ``"module:function"`` names (:class:`prospect_sim.samplers.Sampler`)."""
    import importlib
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def lnprobfn_for_fit(theta, negative=False, residuals=False, **kwargs):
    """Prospector's ``lnprobfn``, except outside the prior when minimising.

    prospect 1.4.1 returns ``-inf`` outside the prior *before* applying
    ``negative=True``, so a scalar minimiser (``--min_method powell``) runs
    off to parameters outside the prior; this returns ``+inf`` there instead.
    Every other value is Prospector's, unchanged.
    """
    from prospect.fitting import lnprobfn
    lnp = lnprobfn(theta, negative=negative, residuals=residuals, **kwargs)
    if negative and not residuals and np.isneginf(lnp):
        return np.inf
    return lnp


class BatchMap:
    """A pool for emcee whose ``map`` evaluates all points in one call of the batched posterior.

    emcee (through Prospector's ``run_emcee_sampler``) maps the posterior
    over half the walkers at a time; this evaluates them as one (n, D)
    block through :class:`~prospect_sim.likelihood.BatchedLnProb`.  The
    first call also evaluates the function emcee passes at the first
    point and refuses to go on if the two disagree (a different
    posterior), so the map never silently answers for another function.
    """

    #: |batched - per-point| above which the first check fails (log-probability).
    CHECK = 0.5

    def __init__(self, lnp):
        self.lnp = lnp
        self._checked = False

    @classmethod
    def for_fit(cls, ingredients):
        """A BatchMap for the posterior of ``ingredients``, or None where it cannot batch."""
        from .likelihood import BatchedLnProb
        ing = ingredients
        lnp = BatchedLnProb(ing.model, ing.obs, ing.sps, ing.noise)
        if lnp.fallback:
            log.info("emcee walkers one at a time: %s", lnp.fallback)
            return None
        return cls(lnp)

    def map(self, func, iterable):
        points = np.array(list(iterable), dtype=float)
        values = self.lnp(points)
        if not self._checked and len(points):
            want = float(func(points[0]))
            got = float(values[0])
            if not (np.isclose(got, want, rtol=1e-3, atol=self.CHECK)
                    or (np.isneginf(got) and np.isneginf(want))):
                raise FitError(f"the batched posterior ({got:.6g}) disagrees with emcee's "
                               f"function ({want:.6g}) at {points[0].tolist()}")
            self._checked = True
        return list(values)


def _fit_model(ingredients, optimize=False, emcee=False, **kwargs):
    from prospect.fitting import fit_model
    ing = ingredients
    bar = emcee and kwargs.get("print_progress", True) and kwargs.get("verbose", True)
    with _emcee_progress(bar):
        return fit_model(ing.obs, ing.model, ing.sps, ing.noise, lnprobfn=lnprobfn_for_fit,
                         optimize=optimize, emcee=emcee, dynesty=False, **kwargs)


@contextlib.contextmanager
def _emcee_progress(on):
    """Inside the block, emcee's ``EnsembleSampler.sample`` shows its progress bar.

    Prospector runs emcee's burn-in rounds and production through
    ``sample(...)`` without ``progress``; this turns emcee's own (tqdm) bar
    on for each of them, on stderr, where ``--quiet`` does not ask for
    silence.
    """
    if not on:
        yield
        return
    from emcee import EnsembleSampler
    original = EnsembleSampler.sample

    def sample(self, *args, **kwargs):
        kwargs.setdefault("progress", True)
        kwargs.setdefault("progress_kwargs", {"desc": "emcee", "leave": False})
        return original(self, *args, **kwargs)

    EnsembleSampler.sample = sample
    try:
        yield
    finally:
        EnsembleSampler.sample = original


def _fix_prospector_restart():
    """prospect 1.4.1's fit_model calls restart_emcee_sampler without importing it."""
    import prospect.fitting.fitting as pff
    if not hasattr(pff, "restart_emcee_sampler"):
        from prospect.fitting.ensemble import restart_emcee_sampler
        pff.restart_emcee_sampler = restart_emcee_sampler


def _restart_positions(restart_from, model):
    """Last walker positions of a previous emcee results file (no stored code is run)."""
    from prospect.io.read_results import results_from
    if not Path(restart_from).is_file():
        raise FitError(f"--restart_from {restart_from}: no such file; give the "
                       f"BASE_emcee.h5 of a previous --emcee run")
    try:
        res, _, _ = results_from(restart_from, dangerous=False)
        chain = np.asarray(res["chain"])
    except (OSError, KeyError) as err:
        raise FitError(f"--restart_from {restart_from}: cannot read an emcee chain "
                       f"({type(err).__name__}: {err})") from err
    if chain.ndim != 3 or chain.shape[-1] != model.ndim:
        raise FitError(f"--restart_from {restart_from}: chain of shape {chain.shape}; "
                       f"expected an emcee chain (nwalkers, niter, {model.ndim}) for "
                       f"parameters {list(model.theta_labels())}")
    return chain[:, -1, :].copy()


# --- derived quantities and writing -------------------------------------------

def _derived_for_theta(theta):
    """(mfrac, total mass formed [Msun], surviving stellar mass [Msun]) at ``theta``."""
    ing = _pool.ingredients()
    model = ing.model
    try:
        _, _, mfrac = model.predict(np.asarray(theta), obs=ing.obs, sps=ing.sps)
    except (ValueError, ProspectSimError):     # e.g. an optimum outside the library
        return (np.nan, np.nan, np.nan)
    mfrac = float(np.squeeze(mfrac)) if np.size(mfrac) == 1 else np.nan
    if "mass" not in model.params:
        return (mfrac, np.nan, np.nan)
    mass = float(np.sum(model.params["mass"]))
    if str(model.params.get("mass_units", "mformed")) == "mstar":
        return (mfrac, mass / mfrac, mass)
    return (mfrac, mass, mass * mfrac)


def _derived_batched(flat, chunk=16384):
    """(n, 3) derived quantities of parameter rows through the batched kernel, or None.

    None when the sps has no batched photometry, or when some row cannot
    be batched (the per-object path then gives NaN for just those).
    """
    from . import forward
    ing = _pool.ingredients()
    if not forward.has_fast_path(ing.sps) or "mass" not in ing.model.params:
        return None
    out = np.empty((len(flat), 3))
    try:
        for start in range(0, len(flat), chunk):
            rows = flat[start:start + chunk]
            _, extras = forward.predict_batch(ing.model, ing.sps, ing.obs, rows, path="fast")
            mass = np.asarray(forward.batch_params(ing.model, rows)["mass"], dtype=float)
            total = mass.sum(axis=1) if mass.ndim == 2 else np.broadcast_to(mass, len(rows))
            if str(ing.model.params.get("mass_units", "mformed")) == "mstar":
                total = total / extras["mfrac"]
            out[start:start + len(rows)] = np.column_stack(
                [extras["mfrac"], total, extras["stellar_mass"]])
    except (ProspectSimError, ValueError):
        return None
    return out


def derived_quantities(chain, pool):
    """Derived quantities for every sample of ``chain`` (shape ``(..., ndim)``).

    Returns
    -------
    dict
        ``{name: array of chain.shape[:-1]}`` for each name in :data:`DERIVED`.
    """
    chain = np.asarray(chain)
    flat = chain.reshape(-1, chain.shape[-1])
    values = _derived_batched(flat)
    if values is None:
        values = np.array(pool.map(_derived_for_theta, list(flat)), dtype=float).reshape(-1, 3)
    return {name: values[:, i].reshape(chain.shape[:-1]) for i, name in enumerate(DERIVED)}


def _optimizer_table(results):
    """prospect's ``optresultlist_to_ndarray`` with a byte-string message h5py can store."""
    npar, nout = len(results[0].x), np.size(results[0].fun)
    dtype = np.dtype([("success", bool), ("message", "S100"), ("nfev", int),
                      ("x", (float, npar)), ("fun", (float, nout))])
    out = np.zeros(len(results), dtype=dtype)
    for i, r in enumerate(results):
        out[i]["success"] = bool(r.success)
        out[i]["message"] = str(r.message).encode("ascii", "replace")[:100]
        out[i]["nfev"] = int(r.nfev)
        out[i]["x"] = r.x
        out[i]["fun"] = np.reshape(r.fun, nout)
    return out


def _json_safe(run_params):
    safe = {}
    for key, value in run_params.items():
        try:
            json.dumps(value)
        except TypeError:
            value = repr(value)
        safe[key] = value
    return safe


#: Prospector's write_hdf5 warnings that say nothing to act on: the model's
#: parameters (which hold functions) are pickled, which it does for every
#: model; its version comes from git, absent from an installed package.
_WRITE_NOISE = ("Could not JSON serialize model_params", "Could not obtain prospector version")


def _write(path, ingredients, sampler, optres, tsample, topt, pool, initial_center):
    import h5py
    from prospect.io.write_results import write_hdf5
    from . import __version__
    ing = ingredients
    run_params = _json_safe(ing.run_params)
    chain = None
    if sampler is not None:
        chain = sampler["samples"] if not hasattr(sampler, "acceptance_fraction") \
            else sampler.chain
    log.info("computing derived quantities (stellar mass) for the samples")
    derived = derived_quantities(chain, pool) if chain is not None else None
    opt_derived = None
    if optres:
        opt_derived = derived_quantities(np.array([r.x for r in optres]), pool)
    with outputs.atomic_path(path, FitError, "fit output") as tmp:
        # Prospector's own best-fit spectrum (smoothed) goes into the file.
        skipping = getattr(ing.model, _compat.PHOTOMETRY_ONLY, False)
        _compat.set_photometry_only(ing.model, ing.obs, on=False)
        try:
            with warnings.catch_warnings():
                for message in _WRITE_NOISE:
                    warnings.filterwarnings("ignore", message=message)
                write_hdf5(tmp, run_params, ing.model, ing.obs, sampler=sampler,
                           optimize_result_list=None, tsample=tsample, toptimize=topt,
                           sampling_initial_center=initial_center, sps=ing.sps)
        finally:
            _compat.set_photometry_only(ing.model, ing.obs, on=skipping)
        with h5py.File(tmp, "a") as hf:
            sdat = hf.require_group("sampling")
            if derived is not None:
                for name, values in derived.items():
                    sdat.create_dataset(name, data=values)
                sdat.attrs["derived_labels"] = json.dumps(list(DERIVED))
            if optres:
                odat = hf.require_group("optimization")
                odat.create_dataset("optimizer_results", data=_optimizer_table(optres))
                for name, values in opt_derived.items():
                    odat.create_dataset(name, data=values)
            hf.attrs["prospect_sim_version"] = json.dumps(__version__)
            hf.attrs["prospect_sim_pool"] = json.dumps(
                {"kind": getattr(pool, "kind", "serial"), "size": getattr(pool, "size", 1)})
    log.info("wrote %s", path)
