"""Speed of GridSPS: per-object SpecModel.predict and batched photometry (one core).

Prints rates, their ratios to the targets and to each other, measured in this
one run, and where the time goes:

    python bench/bench_sps.py [n_batch] [--profile]

BLAS is held to one thread (threadpoolctl, and OMP/OPENBLAS_NUM_THREADS set
before numpy is imported).  Rates are given per wall-clock second and per
CPU second of this process; on a shared machine the CPU-time rate is the
steadier one (wall-clock includes time the process waited for a core).
Each is the best of a few repeats; run it twice to see the noise.
"""

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _timed(func, repeats):
    """Best wall-clock and best CPU seconds of ``repeats`` calls."""
    wall, cpu = np.inf, np.inf
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        result = func()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return result, wall, cpu


def _profile(func, n_lines=10):
    import cProfile
    import io
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    func()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(n_lines)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls"))
    return "\n".join("    " + ln for ln in lines[start:start + n_lines + 1])


def main(n_batch=20000, profile=False):
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    from sedpy.observate import load_filters
    from prospect_sim.sps import GridSPS
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass

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

    def per_object():
        return np.array([model.predict(t, obs=obs, sps=sps)[1] for t in theta[:n_obj]])

    ref, wall, cpu = _timed(per_object, 2)
    obj_wall, obj_cpu = n_obj / wall, n_obj / cpu
    # the same predictions as a photometry-only fit makes them (prospect_sim.fit.prepare):
    # Prospector's smoothing of the unused model spectrum skipped
    from prospect_sim.sps import _compat
    _compat.set_photometry_only(model, obs)
    fast, wall, cpu = _timed(per_object, 2)
    _compat.set_photometry_only(model, obs, on=False)
    fit_wall, fit_cpu = n_obj / wall, n_obj / cpu
    same = np.array_equal(fast, ref)

    params = {k: theta[:, i] for i, k in enumerate(model.theta_labels())}
    params.update(sfh=4, dust_type=0, imf_type=2)
    sps.photometry({k: (v[:100] if np.ndim(v) else v) for k, v in params.items()}, filters)
    (maggies, _), wall, cpu = _timed(lambda: sps.photometry(params, filters), 3)
    bat_wall, bat_cpu = n_batch / wall, n_batch / cpu
    dmag = np.abs(2.5 * np.log10(maggies[:n_obj] / ref)).max()

    print(f"{'':34s}{'per wall s':>12s}{'per CPU s':>12s}")
    print(f"{'per-object SpecModel.predict':34s}{obj_wall:12.0f}{obj_cpu:12.0f}"
          f"   target 250/s: ratio {obj_wall / 250:.2f} (wall) {obj_cpu / 250:.2f} (CPU)")
    print(f"{'  photometry only (as --dynesty)':34s}{fit_wall:12.0f}{fit_cpu:12.0f}"
          f"   {fit_cpu / obj_cpu:.2f}x SpecModel.predict (CPU); same photometry: {same}")
    print(f"{f'batched photometry (N={n_batch})':34s}{bat_wall:12.0f}{bat_cpu:12.0f}"
          f"   target 30,000/s: ratio {bat_wall / 30000:.2f} (wall) {bat_cpu / 30000:.2f} (CPU);"
          f" 75,000/s: {bat_cpu / 75000:.2f} (CPU)")
    print(f"batched / per-object speed ratio: {bat_wall / obj_wall:.0f} (wall), "
          f"{bat_cpu / obj_cpu:.0f} (CPU)")
    print(f"max |batched - per-object| over {n_obj} draws: {dmag:.2e} mag")
    if profile:
        print("\nwhere the batched time goes (cProfile, tottime):")
        print(_profile(lambda: sps.photometry(params, filters)))
        print("\nwhere the per-object time goes (cProfile, tottime, 100 predictions):")
        print(_profile(lambda: [model.predict(t, obs=obs, sps=sps) for t in theta[:100]]))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 20000, profile="--profile" in sys.argv)
