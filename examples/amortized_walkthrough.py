"""Amortised posteriors end to end on the demo parameter file.

Every step is the same parameter file run with a different flag:

1. ``--simulate``  draw the prior and predict DES grizY photometry (HDF5)
2. ``--train``     fit a conditional normalizing flow to the simulations
                   (noise drawn afresh each epoch), then validate it
3. a mock catalogue: new simulations with noise, written as CSV with the
   documented columns ``<filter>_flux``/``<filter>_unc`` (maggies), plus
   ``true_<param>`` columns to check against
4. ``--infer --catalog``  posterior samples for every row of the catalogue
5. ``--validate``  coverage, SBC ranks and TARP on held-out simulations (PNG plots)
6. optionally (``--dynesty``) a classical fit of the demo's own mock galaxy and
   the amortised posterior of the same galaxy, side by side

Run from the repository root::

    python examples/amortized_walkthrough.py --out out/walkthrough            # minutes
    python examples/amortized_walkthrough.py --out out/wt --small              # seconds (tests)

The defaults are a quick demonstration, not a converged network; for the
accuracy targets train on >= 1e6 simulations (``--n_sims``) for more epochs.
"""

import argparse
import os
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMS = os.path.join(ROOT, "param_files", "demo_params.py")


def step(title, args, base):
    """Run the demo param file with ``args``; return the path it printed last."""
    print(f"\n== {title}\n   python param_files/demo_params.py {' '.join(args)}", flush=True)
    out = subprocess.run([sys.executable, PARAMS, *args, "--outfile", base, "--overwrite"],
                         stdout=subprocess.PIPE, text=True)
    if out.returncode:
        sys.exit(f"step failed (exit {out.returncode}): {title}")
    return out.stdout.strip().splitlines()[-1]


def make_catalog(simfile, checkpoint, path, seed=1):
    """Noisy mock catalogue (CSV) from a simulation file, with the trained noise model."""
    import torch

    from prospect_sim.amortized.noise import from_config
    ckpt = torch.load(checkpoint, weights_only=True)
    noise = from_config(ckpt["noise"])
    with h5py.File(simfile, "r") as h5:
        theta, phot = h5["theta"][:], h5["phot"][:]
        labels = [s.decode() if isinstance(s, bytes) else str(s) for s in h5.attrs["theta_labels"]]
        filters = [s.decode() if isinstance(s, bytes) else str(s) for s in h5.attrs["filter_names"]]
    flux, unc, missing = noise.sample(phot, np.random.default_rng(seed))
    cols = [f"{f}_flux" for f in filters] + [f"{f}_unc" for f in filters] + \
        [f"true_{t}" for t in labels]
    with open(path, "w") as fh:
        fh.write("id," + ",".join(cols) + "\n")
        for i in range(len(theta)):
            f = ["" if m else f"{v:.6e}" for v, m in zip(flux[i], missing[i])]
            u = ["" if m else f"{v:.6e}" for v, m in zip(unc[i], missing[i])]
            fh.write(",".join([str(i)] + f + u + [f"{t:.6g}" for t in theta[i]]) + "\n")
    return path, theta, labels


def summarise(posterior, theta, labels):
    with h5py.File(posterior, "r") as h5:
        med, lo, hi = h5["median"][:], h5["p16"][:], h5["p84"][:]
        names = [s.decode() for s in h5.attrs["param_labels"]]
        flags = h5["flags"][:]
    print(f"\n{len(med)} catalogue rows, {int((flags != 0).sum())} flagged")
    print(f"{'param':>10} {'median-truth':>13} {'68% width':>10} {'truth in 68%':>13}")
    for j, name in enumerate(names):
        t = theta[:, labels.index(name)]
        ok = flags == 0
        print(f"{name:>10} {np.median(med[ok, j] - t[ok]):13.3g} "
              f"{np.median(hi[ok, j] - lo[ok, j]):10.3g} "
              f"{np.mean((t[ok] >= lo[ok, j]) & (t[ok] <= hi[ok, j])):13.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/walkthrough", help="output folder")
    p.add_argument("--small", action="store_true", help="tiny settings (for the test suite)")
    p.add_argument("--n_sims", type=int, default=200_000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--n_catalog", type=int, default=1000)
    p.add_argument("--dynesty", action="store_true",
                   help="also fit the demo's mock galaxy with dynesty and compare")
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, "demo")
    if a.small:
        a.n_sims, a.epochs, a.n_catalog = 3000, 2, 20
        net = ["--hidden", "16", "--transforms", "1", "--embedding", "16", "--embed_dim", "8",
               "--batch_size", "256", "--n_test", "100"]
        check = ["--n_validate", "50", "--validate_draws", "50"]
        draws = ["--n_draws", "100"]
    else:
        net, check, draws = [], ["--n_validate", "2000"], ["--n_draws", "1000"]
    quiet = ["--quiet"] if a.small else []

    sims = step("1. simulate the prior", ["--simulate", "--n_samples", str(a.n_sims), *quiet], base)
    flow = step("2. train (and validate) the amortised posterior",
                ["--train", "--simfile", sims, "--epochs", str(a.epochs), *net, *check, *quiet],
                base)
    mock = step("3a. simulate galaxies for a mock catalogue",
                ["--simulate", "--n_samples", str(a.n_catalog), "--seed", "12345", *quiet],
                base + "_mock")
    catalog, theta, labels = make_catalog(mock, flow, base + "_catalog.csv")
    print(f"== 3b. mock catalogue {catalog}")
    post = step("4. infer every catalogue row",
                ["--infer", "--checkpoint", flow, "--catalog", catalog, *draws, *quiet], base)
    summarise(post, theta, labels)
    report = step("5. validate on held-out simulations",
                  ["--validate", "--simfile", sims, "--checkpoint", flow, *check, *quiet], base)
    print(f"   report {report} (plots beside it)")
    if a.dynesty:
        fit = step("6a. dynesty fit of the demo's mock galaxy", ["--dynesty"], base)
        obs_post = step("6b. amortised posterior of the same galaxy",
                        ["--infer", "--checkpoint", flow, *draws], base + "_obs")
        print(f"   compare {fit} with {obs_post}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
