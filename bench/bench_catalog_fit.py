"""Catalogue fits: objects per hour with 1 and 2 local workers and under mpiexec -n 3.

Builds a catalogue of demo mocks (the demo galaxy at redshifts spread
over the prior, DES-depth noise), fits it with the same sampler settings
three ways, each in a fresh folder, and prints objects per hour (end to
end, process start included, and in the fitting loop alone, from the
log), the ratio to one worker, and the largest difference of the draws
between the runs (0: each object's fit does not depend on where it ran)::

    python bench/bench_catalog_fit.py [--n_objects 60] [--sampler emcee]

Samplers: ``emcee`` (``--nwalkers 32 --niter 500 --nburn 64``, the
walkers batched), ``nautilus`` (``--nautilus_nlive 200 --nautilus_neff
1000``), ``optimize`` (Powell).  ``mpiexec -n 3`` is rank 0 handing out
rows plus two fitting ranks: compare it with ``--workers 2``.  On a
2-core machine the workers compete with the master and the OS for the
cores, so the 2-worker ratio is a lower bound of what a node with one
core per rank gives.
"""

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "param_files" / "demo_params.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
SETTINGS = {
    "emcee": ["--emcee", "--nwalkers", "32", "--niter", "500", "--nburn", "64"],
    "nautilus": ["--nautilus", "--nautilus_nlive", "200", "--nautilus_neff", "1000"],
    "optimize": ["--optimize", "--min_method", "powell"],
}


def make_catalog(path, n_objects, seed=7):
    """Demo mocks at redshifts uniform in [0.1, 1.4], DES-depth noise; CSV with objid."""
    import prospect_sim  # noqa: F401
    sys.path.insert(0, str(DEMO.parent))
    import demo_params as p
    from sedpy.observate import load_filters
    model, sps = p.build_model(), p.build_sps()
    obs = {"filters": load_filters(p.FILTERS), "wavelength": None, "spectrum": None}
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["objid"] + [f"{f}_flux" for f in p.FILTERS]
                        + [f"{f}_unc" for f in p.FILTERS])
        for i in range(n_objects):
            truth = dict(p.TRUTH, zred=rng.uniform(0.1, 1.4),
                         mass=10**rng.uniform(9.5, 11.0))
            theta = np.array([truth[n] for n in model.free_params])
            _, maggies, _ = model.predict(theta, obs=obs, sps=sps)
            sigma = p.photometric_sigma(maggies)
            writer.writerow([f"mock{i}"] + list(maggies + rng.normal(0, sigma)) + list(sigma))


def fit(catalog, flags, launcher=(), extra=()):
    """Run one catalogue fit in a fresh folder: (wall seconds, loop seconds, draws)."""
    import h5py
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        proc = subprocess.run([*map(str, launcher), sys.executable, str(DEMO), *flags,
                               "--catalog", str(catalog), *extra], cwd=cwd, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        loop = float(re.search(r"fitted \d+ rows in ([\d.]+) s", proc.stderr).group(1))
        out = Path(cwd) / proc.stdout.strip().splitlines()[-1]
        with h5py.File(out, "r") as f:
            draws = f["draws"][:]
    return wall, loop, draws


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_objects", type=int, default=60)
    parser.add_argument("--sampler", choices=sorted(SETTINGS), default="emcee")
    args = parser.parse_args(argv)
    flags = SETTINGS[args.sampler] + ["--n_draws", "100"]
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Path(tmp) / "mocks.csv"
        make_catalog(catalog, args.n_objects)
        runs = {"1 worker": fit(catalog, flags),
                "--workers 2": fit(catalog, flags, extra=["--workers", "2"]),
                "mpiexec -n 3": fit(catalog, flags, launcher=(MPIEXEC, "-n", "3"))}
    print(f"{args.n_objects} demo mocks, --{args.sampler} {' '.join(flags[1:])}")
    print(f"{'run':14s} {'wall s':>8s} {'obj/hour':>9s} {'loop s':>8s} {'obj/hour':>9s} "
          f"{'x 1 worker (loop)':>18s} {'max |draws - 1 worker|':>23s}")
    one = runs["1 worker"]
    for name, (wall, loop, draws) in runs.items():
        diff = float(np.nanmax(np.abs(draws - one[2])))
        print(f"{name:14s} {wall:8.1f} {args.n_objects / wall * 3600:9.0f} {loop:8.1f} "
              f"{args.n_objects / loop * 3600:9.0f} {one[1] / loop:18.2f} {diff:23.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
