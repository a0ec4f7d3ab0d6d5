"""Batched photometry with the gas and dust-emission parameters free: rate, set-up and agreement.

Prospector-alpha-style models free ``gas_logz`` (untied from ``logzsol``),
``gas_logu`` and ``duste_umin``/``duste_qpah``/``duste_gamma``.  The
batched kernel takes them per object (node tables of the nebular grid,
a basis of the DL07 templates); this bench measures, in one run and one
process, on LSST ugrizy + WISE W1-W4 at z = 0.05-3 (delayed tau, birth
clouds, nebular and dust emission on):

- objects per CPU-second of ``GridSPS.photometry`` (after a warm-up
  chunk, ``--chunk`` rows) with ``TemplateLibrary``'s fixed gas and dust
  emission, with the dust emission free, the gas free, and both;
- the set-up (first call) of each, in CPU seconds;
- the largest |batched - SpecModel.predict| over ``--n_reference`` draws
  with everything free (bands starting blueward of Ly-alpha left out).

::

    python bench/bench_free_components.py [--chunk 16384] [--n_reference 60]
"""

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

FILTERS = ["lsst_baseline_u", "lsst_baseline_g", "lsst_baseline_r", "lsst_baseline_i",
           "lsst_baseline_z", "lsst_baseline_y", "wise_w1", "wise_w2", "wise_w3", "wise_w4"]
FIXED = dict(gas_logu=-2.0, duste_umin=1.0, duste_qpah=4.0, duste_gamma=1e-3)


def draws(n, seed):
    rng = np.random.default_rng(seed)
    logzsol = rng.uniform(-1.9, 0.19, n)
    return dict(zred=rng.uniform(0.05, 3.0, n), mass=10**rng.uniform(8, 11.5, n),
                logzsol=logzsol, dust2=rng.uniform(0, 1.5, n), tage=10**rng.uniform(-2, 1, n),
                tau=10**rng.uniform(-1, 1, n), gas_logz=rng.uniform(-2.0, 0.5, n),
                gas_logu=rng.uniform(-4, -1, n), duste_umin=10**rng.uniform(-1, np.log10(20), n),
                duste_qpah=rng.uniform(0.5, 4.58, n), duste_gamma=10**rng.uniform(-3, 0, n))


def params_for(d, free_gas, free_duste):
    p = dict(d, sfh=4, dust_type=0, dust1=d["dust2"], add_neb_emission=True,
             add_dust_emission=True)
    if not free_gas:
        p.update(gas_logu=FIXED["gas_logu"], gas_logz=d["logzsol"])
    if not free_duste:
        p.update({k: FIXED[k] for k in ("duste_umin", "duste_qpah", "duste_gamma")})
    return p


def rate(free_gas, free_duste, chunk, filters):
    from prospect_sim.sps import GridSPS
    sps = GridSPS()
    start = time.process_time()
    sps.photometry(params_for(draws(chunk, 1), free_gas, free_duste), filters)
    setup = time.process_time() - start
    best = np.inf
    for seed in (2, 3, 4):
        p = params_for(draws(chunk, seed), free_gas, free_duste)
        start = time.process_time()
        sps.photometry(p, filters)
        best = min(best, time.process_time() - start)
    return chunk / best, setup


def agreement(n, filters):
    """Max |dmag| of batched vs SpecModel.predict with everything free."""
    from prospect.models import SpecModel, priors
    from prospect.models.templates import TemplateLibrary
    from prospect_sim.sps import GridSPS
    cfg = TemplateLibrary["parametric_sfh"]
    cfg.update(TemplateLibrary["nebular"])
    cfg.update(TemplateLibrary["dust_emission"])
    cfg["gas_logz"] = dict(N=1, isfree=True, init=0.0, prior=priors.TopHat(mini=-2, maxi=0.5))
    for key in ("gas_logu", "duste_umin", "duste_qpah", "duste_gamma"):
        cfg[key]["isfree"] = True
    cfg["dust1"] = dict(N=1, isfree=False, init=0.0)
    model = SpecModel(cfg)
    d = draws(n, 9)
    sps, obs, ref = GridSPS(), dict(filters=filters, wavelength=None, spectrum=None), []
    for i in range(n):
        model.params["zred"] = np.atleast_1d(d["zred"][i])
        model.params["dust1"] = np.atleast_1d(d["dust2"][i])
        ref.append(model.predict(np.array([d[k][i] for k in model.theta_labels()]), obs=obs,
                                 sps=sps)[1])
    fast = GridSPS().photometry(params_for(d, True, True), filters)[0]
    blue = np.array([f.wavelength[f.transmission > 0].min() for f in filters])
    ok = blue[None, :] > 1216.0 * (1 + d["zred"][:, None])
    return float(np.max(np.where(ok, np.abs(2.5 * np.log10(fast / np.array(ref))), 0.0)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunk", type=int, default=16384)
    parser.add_argument("--n_reference", type=int, default=60)
    args = parser.parse_args()
    import prospect_sim.sps  # noqa: F401
    from sedpy.observate import load_filters
    filters = load_filters(FILTERS)
    base = None
    print(f"{'free':<28} {'objects/CPU-s':>14} {'x fixed':>8} {'set-up CPU s':>13}")
    for label, gas, duste in (("nothing (TemplateLibrary)", False, False),
                              ("duste_*", False, True), ("gas_logu, gas_logz", True, False),
                              ("gas and duste_*", True, True)):
        r, setup = rate(gas, duste, args.chunk, filters)
        base = base or r
        print(f"{label:<28} {r:14,.0f} {r / base:8.2f} {setup:13.1f}")
    if args.n_reference:
        print(f"max |batched - SpecModel.predict|, everything free, {args.n_reference} draws: "
              f"{agreement(args.n_reference, filters):.2e} mag")


if __name__ == "__main__":
    main()
