"""Speed of ``--infer`` on the demo model, measured in one run.

    python bench/bench_infer.py                           # 10,000 rows x 1,000 draws
    python bench/bench_infer.py --rows 1000 --compare_rows 200   # quicker
    python bench/bench_infer.py --checkpoint out/demo/demo_flow.pt --dynesty
    python bench/bench_infer.py --checkpoint out/demo/demo_flow.pt --compile --compare_rows 0
    python bench/bench_infer.py --checkpoint out/demo/demo_flow.pt --compile --bfloat16 --compare_rows 0

For each flow family in ``--flows`` (by default the default flow,
``rqs_coupling``, and the previous default, zuko's autoregressive ``nsf``;
untrained networks of their default sizes unless ``--checkpoint`` names a
trained one: the cost of sampling does not depend on the weights), prints,
measured in this run on this CPU:

1. ``infer()`` end to end on a CSV catalogue with ``--n_draws`` draws per row
   (read, features, sampling, percentiles, HDF5 writes): ms per galaxy, once
   per ``--repeat``, and the issue's target of 5 ms. The first flow of
   ``--flows`` runs on ``--rows`` rows, the others on the first
   ``--compare_rows`` (slow flows cost the same per galaxy on fewer rows);
2. the sampling alone (``AmortizedPosterior.sample`` without the density,
   as ``--infer`` calls it without ``--importance``), ms per galaxy;
3. the ratio of each flow's end-to-end time to the first flow's; with
   ``--compile``, the first flow is also run with ``--compile`` on the same
   rows (each run's wall time includes compiling: the first run's a full
   compile, the later ones a few seconds of tracing with torch's on-disk
   cache);
   with ``--bfloat16`` too, once more with ``--compile --bfloat16`` (the
   flow's matrix products in bfloat16);
4. with ``--importance``: the same with importance weights through
   ``forward.predict_batch`` (GridSPS), on ``--rows_importance`` rows;
5. with ``--dynesty``: one dynesty fit of the demo galaxy through the
   command line (seconds; ``--dynesty_args`` adds its flags) and the
   speed-up per galaxy.

The temporary folder is removed at the end unless ``--keep``. The load
average is printed before and after: timings are wall-clock on a
possibly shared machine, so rerun to see the spread. ``--threads`` sets
torch's thread count (default: torch's own, one per core). Nothing is
asserted here.
"""

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from prospect_sim.paramfile import load as load_paramfile

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "param_files" / "demo_params.py"


def _demo():
    """Model, obs and sps of the demo parameter file, built with its defaults."""
    ingredients = load_paramfile(DEMO).build({})
    return ingredients.model, ingredients.obs, ingredients.sps


def _checkpoint(path, flow, model, obs, noise):
    """An untrained checkpoint of the default size for ``flow`` (timing only)."""
    from prospect_sim.amortized import options, spec
    from prospect_sim.amortized.posterior import AmortizedPosterior, save_checkpoint
    problem = spec.model_problem(model, obs)
    post = AmortizedPosterior.new(problem, [], noise, dict(options.DEFAULTS, flow=flow))
    state = post.state()
    state["model_state"] = post.net.state_dict()
    state["best_model_state"] = None
    save_checkpoint(state, path)
    return path


def _catalog(path, rows, model, obs, sps, noise, seed=0):
    from prospect_sim.forward import predict_batch, prior_transform
    rng = np.random.default_rng(seed)
    theta = prior_transform(model, rng.random((rows, len(model.theta))))
    phot, _ = predict_batch(model, sps, obs, theta)
    flux, unc, _ = noise.sample(phot, rng)
    names = [f.name for f in obs["filters"]]
    with open(path, "w") as fh:
        fh.write(",".join([f"{n}_flux" for n in names] + [f"{n}_unc" for n in names]) + "\n")
        for f, u in zip(flux, unc):
            fh.write(",".join(f"{v:.6e}" for v in np.concatenate([f, u])) + "\n")
    return path


def _head(path, out, rows):
    """The header and first ``rows`` rows of a CSV catalogue."""
    with open(path) as fh, open(out, "w") as dst:
        for i, line in enumerate(fh):
            if i > rows:
                break
            dst.write(line)
    return out


def _load():
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def main(argv=None):
    p = argparse.ArgumentParser(description="speed of --infer")
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--compare_rows", type=int, default=500,
                   help="rows for the flows after the first of --flows")
    p.add_argument("--n_draws", type=int, default=1000)
    p.add_argument("--flows", nargs="+", default=["rqs_coupling", "nsf"])
    p.add_argument("--checkpoint", default=None, help="a trained checkpoint (overrides --flows)")
    p.add_argument("--infer_batch", type=int, default=256)
    p.add_argument("--repeat", type=int, default=2, help="end-to-end runs per flow")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--importance", action="store_true")
    p.add_argument("--rows_importance", type=int, default=100)
    p.add_argument("--compile", action="store_true",
                   help="also run the first flow with --compile and print the ratio")
    p.add_argument("--bfloat16", action="store_true",
                   help="with --compile: also run it with --compile --bfloat16")
    p.add_argument("--dynesty", action="store_true")
    p.add_argument("--dynesty_args", default="",
                   help="extra flags for that fit, e.g. the demo's own: \"--nested_sample rwalk "
                        "--nested_walks 16 --nested_target_n_effective 1000 "
                        "--nested_dlogz_init 0.1\" (default: Prospector's defaults, which "
                        "took over 20 min here)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary folder (catalogue, checkpoints, outputs: "
                        "about 0.5 GB for 10,000 rows)")
    a = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench_infer_")
    try:
        return _run(a, tmp)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(a, tmp):

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from prospect_sim.amortized.catalog import columns_for  # noqa: F401 (import cost outside timing)
    from prospect_sim.amortized.infer import CatalogSource, infer
    from prospect_sim.amortized.noise import default_noise
    from prospect_sim.amortized.posterior import AmortizedPosterior, load_checkpoint

    model, obs, sps = _demo()
    noise = default_noise(obs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs; {_load()}; temp folder {tmp}")
    t = time.perf_counter()
    cat = _catalog(os.path.join(tmp, "catalog.csv"), a.rows, model, obs, sps, noise)
    print(f"mock catalogue: {a.rows} rows in {time.perf_counter() - t:.1f} s")
    small = _head(cat, os.path.join(tmp, "compare.csv"), min(a.rows, a.compare_rows))
    names = [f.name for f in obs["filters"]]
    runs = ([("checkpoint", a.checkpoint)] if a.checkpoint else
            [(f, _checkpoint(os.path.join(tmp, f"{f}.pt"), f, model, obs, noise))
             for f in a.flows])
    runs = [(label, ck_path, False, False) for label, ck_path in runs]
    if a.compile:  # the first flow again, compiled (and in bfloat16), on the same rows
        runs.insert(1, (runs[0][0] + "+compile", runs[0][1], True, False))
        if a.bfloat16:
            runs.insert(2, (runs[0][0] + "+bf16", runs[0][1], True, True))
    per_galaxy = {}
    for i, (label, ck_path, compile_, bf16) in enumerate(runs):
        ck = load_checkpoint(ck_path)
        opts = dict(n_draws=a.n_draws, infer_batch=a.infer_batch, compile=compile_,
                    bfloat16=bf16)
        full = i == 0 or compile_
        path, rows = (cat, a.rows) if full else (small, min(a.rows, a.compare_rows))
        walls = []
        for r in range(a.repeat):
            src = CatalogSource(path, names, ck["conditions"])
            t = time.perf_counter()
            infer(ck, ck_path, src, os.path.join(tmp, f"{label}_post{r}.h5"), opts, quiet=True)
            walls.append(time.perf_counter() - t)
            src.close()
        post = AmortizedPosterior.from_checkpoint(ck)
        gemm_dtype = post.gemm_dtype(bf16)
        if compile_:
            post.compile_sampling(a.infer_batch)
            post.sample(np.full((a.infer_batch, len(names)), 1e-9),
                        np.full((a.infer_batch, len(names)), 1e-10),
                        np.zeros((a.infer_batch, len(names)), bool), None, a.n_draws,
                        density=False, gemm_dtype=gemm_dtype)  # compile
        n = min(rows, 512)
        f = np.full((n, len(names)), 1e-9)
        u = np.full((n, len(names)), 1e-10)
        t = time.perf_counter()
        for s in range(0, n, a.infer_batch):
            post.sample(f[s:s + a.infer_batch], u[s:s + a.infer_batch],
                        np.zeros((min(a.infer_batch, n - s), len(names)), bool), None, a.n_draws,
                        density=False, gemm_dtype=gemm_dtype)  # as infer() without --importance
        sample_only = (time.perf_counter() - t) / n
        per_galaxy[label] = min(walls) / rows
        cfg = ck["flow_config"]
        each = ", ".join(f"{1e3 * w / rows:.2f}" for w in walls)
        print(f"{label:>13}: infer end to end {1e3 * min(walls) / rows:7.2f} ms/galaxy best of "
              f"{a.repeat} (each: {each}; {rows} rows x {a.n_draws} draws; target <= 5 ms); "
              f"sampling alone {1e3 * sample_only:7.2f} ms/galaxy  "
              f"[{cfg['flow']}, {cfg['transforms']} transforms, hidden {cfg['hidden']}]",
              flush=True)
        if i:
            first = runs[0][0]
            print(f"{'':>13}  {per_galaxy[label] / per_galaxy[first]:.1f}x the time of {first}",
                  flush=True)
        if a.importance and not bf16:
            from prospect_sim.amortized.importance import Reweighter
            rw = Reweighter(model, sps, obs, ck["problem"])
            few = _head(cat, os.path.join(tmp, "small.csv"), a.rows_importance)
            src = CatalogSource(few, names, ck["conditions"])
            t = time.perf_counter()
            infer(ck, ck_path, src, os.path.join(tmp, f"{label}_is.h5"), opts, reweighter=rw,
                  quiet=True)
            src.close()
            wall_is = time.perf_counter() - t
            print(f"{'':>13}  with --importance {1e3 * wall_is / a.rows_importance:7.1f} ms/galaxy "
                  f"({a.rows_importance} rows)", flush=True)
    print(_load())
    if a.dynesty:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, str(DEMO), "--dynesty", "--outfile",
                              os.path.join(tmp, "dyn"), "--quiet", *shlex.split(a.dynesty_args)],
                             capture_output=True, text=True)
        dyn = time.perf_counter() - t
        status = "ok" if out.returncode == 0 else f"failed (exit {out.returncode})"
        print(f"dynesty fit of the demo galaxy ({a.dynesty_args or 'Prospector defaults'}): "
              f"{dyn:.1f} s ({status})", flush=True)
        for label, sec in per_galaxy.items():
            print(f"{label:>13}: speed-up per galaxy vs dynesty {dyn / sec:,.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
