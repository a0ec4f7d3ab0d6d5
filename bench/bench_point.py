"""SpecModel.predict and Prospector's lnprobfn with GridSPS: per-object code vs the point path.

For each parameter file (the demo, the star-forming nebular model, the
agnfinder-style AGN model) it times, on one core and in this one run:

- ``SpecModel.predict`` of the photometry-only obs: Prospector's own code
  (``exact_predict``) against the point path (``GridSPS.point_photometry``,
  what every photometry-only fit now uses);
- ``prospect.fitting.lnprobfn``: Prospector's function as shipped
  (unwrapped, its own predict, scipy.stats priors) against the one every
  caller gets after ``import prospect_sim`` (point path, closed-form
  priors of :mod:`prospect_sim.priors`);

and prints calls per CPU-second, their ratio, and the largest difference
in magnitude over prior draws::

    python bench/bench_point.py [--n_calls 400] [--n_draws 200]

BLAS is held to one thread.  Each timing is the best of five repeats of
``--n_calls`` calls at prior draws (the same draws for both paths).
"""

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

PARAM_FILES = ("demo_params.py", "starforming_params.py", "agn_params.py")


def _rate(func, thetas, repeats=5):
    """Best calls per CPU-second of ``func(theta)`` over ``thetas``, after one pass.

    The first pass builds what either path keeps between calls (the point
    path's tables per redshift group, about 7 ms each on first use), as
    the first of a fit's thousands of calls do.
    """
    for theta in thetas:
        func(theta)
    best = np.inf
    for _ in range(repeats):
        start = time.process_time()
        for theta in thetas:
            func(theta)
        best = min(best, time.process_time() - start)
    return len(thetas) / best


@contextlib.contextmanager
def _prospectors_priors():
    """Prospector's own scipy.stats prior evaluation (as shipped) inside the block."""
    from prospect.models import priors
    fast = priors.Prior.__call__
    priors.Prior.__call__ = fast.__wrapped__
    try:
        with np.errstate(divide="ignore"):
            yield
    finally:
        priors.Prior.__call__ = fast


def measure(path, n_calls, n_draws):
    from prospect_sim import forward         # first: it wraps Prospector's lnprobfn
    from prospect.fitting import lnprobfn
    from prospect_sim.paramfile import load
    from prospect_sim.sps import _compat

    ing = load(path).build({"sps_library": "grid"})
    model, obs, sps = ing.model, ing.obs, ing.sps
    rng = np.random.default_rng(3)
    thetas = forward.prior_transform(model, rng.uniform(size=(max(n_calls, n_draws),
                                                              model.ndim)))

    def predict(theta):
        return model.predict(theta, obs=obs, sps=sps)

    def posterior(theta, function=lnprobfn):
        return function(theta, model=model, obs=obs, sps=sps, noise=ing.noise)

    with _compat.exact_predict():
        exact = _rate(predict, thetas[:n_calls])
        ref = np.array([predict(t)[1] for t in thetas[:n_draws]])
        with _prospectors_priors():
            shipped = _rate(lambda t: posterior(t, lnprobfn.__wrapped__), thetas[:n_calls])
    _compat.set_photometry_only(model, obs)
    try:
        point = _rate(predict, thetas[:n_calls])
        fast = np.array([predict(t)[1] for t in thetas[:n_draws]])
    finally:
        _compat.set_photometry_only(model, obs, on=False)
    wrapped = _rate(posterior, thetas[:n_calls])
    zred = np.broadcast_to(np.asarray(forward.batch_params(model, thetas[:n_draws])["zred"],
                                      dtype=float).reshape(-1), (n_draws,))
    blue = np.array([f.wavelength[f.transmission > 0].min() for f in obs["filters"]])
    forest = blue[None, :] < 1216.0 * (1 + zred[:, None])
    dmag = np.abs(2.5 * np.log10(fast / ref))
    return {"predict": (exact, point), "lnprobfn": (shipped, wrapped),
            "dmag": float(dmag[~forest].max(initial=0.0)),
            "dmag_forest": float(dmag[forest].max(initial=0.0)), "forest": int(forest.sum())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_calls", type=int, default=400)
    parser.add_argument("--n_draws", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    files = Path(__file__).resolve().parents[1] / "param_files"
    print(f"{'parameter file':24s} {'what':10s} {'Prospector /s':>14s} {'point /s':>10s} "
          f"{'ratio':>6s}")
    for name in PARAM_FILES:
        res = measure(files / name, args.n_calls, args.n_draws)
        for what in ("predict", "lnprobfn"):
            before, after = res[what]
            print(f"{name:24s} {what:10s} {before:14.0f} {after:10.0f} {after / before:6.1f}")
        forest = (f"; {res['forest']} band-draws in the Lyman forest: max {res['dmag_forest']:.3g}"
                  if res["forest"] else "")
        print(f"{'':24s} max |point - Prospector| over {args.n_draws} prior draws: "
              f"{res['dmag']:.2e} mag{forest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
