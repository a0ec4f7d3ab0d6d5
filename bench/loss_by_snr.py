"""Held-out loss of amortised posteriors by signal-to-noise, several checkpoints side by side.

    python bench/loss_by_snr.py --simfile out/demo/demo_sims.h5 A_best.pt B_best.pt

For every checkpoint, the mean of :math:`-\\log q(\\theta \\mid x)` (in
parameter space, so checkpoints with different normalisations compare) over
the held-out test rows of the simulation file, each observed ``--repeats``
times with noise from the first checkpoint's noise model; the same noisy
observations for every checkpoint. Grouped by the observed S/N
(:math:`\\sqrt{\\sum_b (f_b / \\sigma_b)^2}` over present bands).

Averaged over the objects of a group, the loss is the KL divergence from the
true posterior to the flow plus a constant the flows share: a lower loss in a
group is a closer posterior there, without needing an exact reference. The
validation loss that training minimises is dominated by faint objects; this
shows the bright ones separately. Standard errors are printed beside the
differences from the first checkpoint (paired: same observations).

A lower average KL can still hide objects where a flow is too narrow, so
the coverage of the truth is also printed per group (``--draws`` posterior
draws per observation): the fraction of truths inside the central 68% and
90% intervals, the mean over parameters and the worst parameter. Selecting
objects on their observed S/N keeps a calibrated posterior calibrated.
"""

import argparse

import numpy as np

EDGES = (0, 5, 20, 50, 100, np.inf)


def _inside(post, flux, unc, missing, truth, n_draws, seed, chunk=2000):
    """(2, N, D) bool: truth inside the central 68% and 90% intervals of the draws."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    out = np.empty((2,) + truth.shape, dtype=bool)
    for a in range(0, len(truth), chunk):
        sl = slice(a, a + chunk)
        draws, _ = post.sample(flux[sl], unc[sl], missing[sl], None, n_draws, gen)
        for i, level in enumerate((0.68, 0.90)):
            lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=1)
            out[i, sl] = (truth[sl] >= lo) & (truth[sl] <= hi)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--simfile", required=True)
    p.add_argument("--repeats", type=int, default=10, help="noise draws per test row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draws", type=int, default=400, help="posterior draws for the coverage")
    a = p.parse_args(argv)

    import torch
    from prospect_sim.amortized.data import SimulationData
    from prospect_sim.amortized.posterior import AmortizedPosterior, load_checkpoint

    ckpts = [load_checkpoint(c) for c in a.checkpoints]
    posts = [AmortizedPosterior.from_checkpoint(c) for c in ckpts]
    with SimulationData(a.simfile) as data:
        lo, hi = ckpts[0]["simfile"]["split"]["test"]
        theta, phot = data.read(lo, hi)
    rng = np.random.default_rng(a.seed)
    theta = np.repeat(theta, a.repeats, axis=0)
    flux, unc, missing = posts[0].noise.sample(np.repeat(phot, a.repeats, axis=0), rng)
    snr = np.sqrt(np.sum(np.where(missing, 0.0, (flux / unc) ** 2), axis=1))
    nll, inside = [], []
    with torch.no_grad():
        for post in posts:
            x = post.features(flux, unc, missing)
            th = torch.from_numpy(theta[:, post.inferred_index])
            nll.append(-post.log_prob(th, x).double().numpy())
            inside.append(_inside(post, flux, unc, missing, theta[:, post.inferred_index],
                                  a.draws, a.seed))
    nll = np.array(nll)                                        # (checkpoints, rows)
    groups = [(f"{s0:g}-{s1:g}", sel) for s0, s1 in zip(EDGES[:-1], EDGES[1:])
              if (sel := (snr >= s0) & (snr < s1)).any()]
    print(f"{len(theta):,} observations ({hi - lo:,} test rows x {a.repeats} noise draws)")
    head = "".join(f"  {'ckpt ' + str(i):>22}" for i in range(len(posts)))
    print(f"{'S/N':>10} {'n':>7}{head}")
    for name, sel in groups:
        cells = f"  {nll[0, sel].mean():>22.3f}"
        for k in range(1, len(posts)):
            d = nll[k, sel] - nll[0, sel]
            cells += f"  {nll[k, sel].mean():>8.3f} ({d.mean():+.3f}+-{d.std() / np.sqrt(sel.sum()):.3f})"
        print(f"{name:>10} {sel.sum():>7}{cells}")
    print(f"{'all':>10} {len(snr):>7}" + "".join(f"  {v:>22.3f}" for v in nll.mean(axis=1)))
    print(f"\ncoverage of the truth ({a.draws} draws): 68% and 90% intervals, "
          "mean over parameters [worst parameter]")
    print(f"{'S/N':>10} {'n':>7}" + "".join(f"  {'ckpt ' + str(i):>30}" for i in range(len(posts))))
    for name, sel in groups:
        cells = ""
        for ins in inside:
            c = ins[:, sel].mean(axis=1)                      # (2 levels, D)
            worst = c[np.arange(2), np.argmax(np.abs(c - [[0.68], [0.90]]), axis=1)]
            cells += (f"  {c[0].mean():.3f} [{worst[0]:.3f}] {c[1].mean():.3f} "
                      f"[{worst[1]:.3f}]")
        print(f"{name:>10} {sel.sum():>7}{cells}")
    for i, c in enumerate(a.checkpoints):
        print(f"ckpt {i}: {c}")


if __name__ == "__main__":
    main()
