"""Classical fits of one mock against its exact posterior: nautilus and dynesty defaults.

    python bench/accuracy_classical.py [--param_file param_files/demo_params.py]
        [--n_reference 4e7] [--samplers nautilus,dynesty] [--mock_seed 101]

The reference is the exact posterior by importance sampling from the
prior: ``--n_reference`` prior draws weighted by the likelihood of the
mock's photometry through the batched kernel
(:class:`prospect_sim.likelihood.BatchedLnProb`, which equals Prospector's
``lnprobfn`` to what 1e-3 mag implies), in blocks of 100,000; its
effective sample size (Kish) and ln Z are printed, so the precision of
the reference is known (standard error of a mean: sd / sqrt(ESS)).  Each
sampler then fits the same mock with the parameter file's defaults
(Prospector's command-line defaults for dynesty: slice sampling, 100 live
points, ten batches; this package's for nautilus), one process, through
:func:`prospect_sim.fit.sample`.  Printed per sampler and parameter: the
weighted median's offset from the reference's in reference sd, the 68%
width over the reference's, and the sampler's ln Z, likelihood calls and
wall time.  Nothing is asserted: this measures.  A prior-draw reference
suits faint mocks with broad posteriors (the demo's default mock: 4e7
draws give an ESS of ~840 in ~10 min on one core); a bright mock needs
``bench/accuracy_amortized.py``'s flow-proposal reference.
"""

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def reference(ing, n, seed=0, block=100_000):
    """(theta, log_weights, ess, lnz) of the exact posterior from ``n`` prior draws."""
    from prospect_sim import forward
    from prospect_sim.likelihood import BatchedLnProb
    model = ing.model
    lnl = BatchedLnProb(model, ing.obs, ing.sps, ing.noise, nested=True)
    rng = np.random.default_rng(seed)
    kept_theta, kept_lnl, total = [], [], -np.inf
    for _ in range(int(n) // block):
        theta = forward.prior_transform(model, rng.random((block, model.ndim)))
        ll = lnl(theta)
        total = np.logaddexp(total, np.logaddexp.reduce(ll))
        kept_theta.append(theta)
        kept_lnl.append(ll)
        if len(kept_theta) > 8:              # keep what can carry weight
            theta, ll = np.concatenate(kept_theta), np.concatenate(kept_lnl)
            keep = ll > ll.max() - 40.0
            kept_theta, kept_lnl = [theta[keep]], [ll[keep]]
    theta, ll = np.concatenate(kept_theta), np.concatenate(kept_lnl)
    logw = ll - np.logaddexp.reduce(ll)
    w = np.exp(logw)
    return theta, logw, 1.0 / np.sum(w**2), float(total - np.log(int(n) // block * block))


def summary(theta, logw):
    """Weighted 16/50/84th percentiles per column, (3, D)."""
    from prospect_sim.catalog_fit import weighted_quantiles
    return weighted_quantiles(theta, np.exp(logw - logw.max()), [16.0, 50.0, 84.0])


def main():
    from prospect_sim import cli, fit, pool
    from prospect_sim.paramfile import load
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--param_file", default="param_files/demo_params.py")
    ap.add_argument("--n_reference", type=float, default=4e7)
    ap.add_argument("--samplers", default="nautilus,dynesty")
    ap.add_argument("--mock_seed", type=int, default=None)
    args = ap.parse_args()
    pfile = load(args.param_file)
    parser = cli.get_parser()
    if "add_arguments" in pfile.namespace:
        pfile.namespace["add_arguments"](parser)
    argv = [] if args.mock_seed is None else ["--mock_seed", str(args.mock_seed)]
    run_params = dict(vars(parser.parse_args(argv)), sps_library="grid")
    ing = pfile.build(run_params)
    labels = list(ing.model.theta_labels())
    t0 = time.time()
    theta, logw, ess, lnz = reference(ing, args.n_reference)
    ref = summary(theta, logw)
    sd = 0.5 * (ref[2] - ref[0])
    print(f"reference: {int(args.n_reference):,} prior draws, ESS {ess:.0f}, ln Z {lnz:.3f}, "
          f"{time.time() - t0:.0f} s")
    print("  median " + "  ".join(f"{k} {m:.4g}" for k, m in zip(labels, ref[1])))
    with pool.substituted(ing):
        for kind in args.samplers.split(","):
            out = fit.sample(ing, kind, run_params)
            got = summary(out["samples"], out["log_weights"])
            offset = (got[1] - ref[1]) / sd
            width = (got[2] - got[0]) / (ref[2] - ref[0])
            print(f"{kind}: ln Z {out['logz']:.3f}, {out['ncall']:,} calls, "
                  f"{out['seconds']:.0f} s")
            print("  (median - ref) / sd " + "  ".join(f"{k} {o:+.2f}" for k, o in zip(labels, offset)))
            print("  68% width / ref     " + "  ".join(f"{k} {r:.2f}" for k, r in zip(labels, width)))


if __name__ == "__main__":
    main()
