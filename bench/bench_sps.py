"""Speed of GridSPS: per-object SpecModel.predict and batched photometry (one core).

Prints rates and their ratios to the targets measured in this one run:
    python bench/bench_sps.py [n_batch]
Run with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 for one-core numbers.
"""

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def main(n_batch=20000):
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    from sedpy.observate import load_filters
    from prospect_sim.sps import GridSPS

    filters = load_filters([f"decam_{b}" for b in ("g", "r", "i", "z", "Y")])
    cfg = TemplateLibrary["parametric_sfh"]
    cfg["zred"]["isfree"] = True
    cfg["zred"]["prior"].params["maxi"] = 3.0
    cfg["logzsol"]["prior"].params["mini"] = -2.0
    model = SpecModel(cfg)
    sps = GridSPS()
    obs = dict(filters=filters, wavelength=None, spectrum=None)
    rng = np.random.default_rng(0)
    theta = np.array([model.prior_transform(rng.uniform(size=model.ndim))
                      for _ in range(n_batch)])
    model.predict(theta[0], obs=obs, sps=sps)
    n_obj = 300
    t0 = time.perf_counter()
    ref = np.array([model.predict(t, obs=obs, sps=sps)[1] for t in theta[:n_obj]])
    per_object = n_obj / (time.perf_counter() - t0)

    params = {k: theta[:, i] for i, k in enumerate(model.theta_labels())}
    params.update(sfh=4, dust_type=0, imf_type=2)
    sps.photometry({k: (v[:100] if np.ndim(v) else v) for k, v in params.items()}, filters)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        maggies, _ = sps.photometry(params, filters)
        best = min(best, time.perf_counter() - t0)
    batched = n_batch / best
    dmag = np.abs(2.5 * np.log10(maggies[:n_obj] / ref)).max()

    print(f"per-object SpecModel.predict : {per_object:10.0f} /s  "
          f"(target 250/s: ratio {per_object / 250:.2f})")
    print(f"batched photometry (N={n_batch}): {batched:10.0f} /s  "
          f"(target 30,000/s: ratio {batched / 30000:.2f}; 75,000/s: {batched / 75000:.2f})")
    print(f"batched / per-object speed ratio: {batched / per_object:.0f}")
    print(f"max |batched - per-object| over {n_obj} draws: {dmag:.2e} mag")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
