"""The peer of issue 6, measured here: sbi's default NPE against our amortised posterior.

    /work/sbi-venv/bin/python bench/bench_sbi_peer.py --simfile out/demo/demo_sims.h5 \\
        --checkpoint out/demo/demo_flow.pt --n_train 200000 --n_test 2000 --n_draws 1000
    ... --n_train 5000 --n_test 100 --n_draws 100 --max_epochs 2 --threads 1   # smoke test

Needs the ``sbi`` package, which prospect_sim does not depend on: install it in
a separate environment with torch pinned to the CPU wheel first (an unpinned
torch fetches several GB of CUDA packages), then sbi and prospect_sim's own
requirements under the same pin (``pip install -c constraints.txt sbi``, with
``torch==2.13.0`` in ``constraints.txt``).

Both methods see the same data. The checkpoint's noise model draws ONE noisy
realisation of each of the first ``--n_train`` usable rows of ``--simfile``
(sbi's usual fixed training set) and the network input is the checkpoint's
own standardised features (``AmortizedPosterior.features``); theta is the
inferred parameters in parameter units. sbi gets ``NPE(prior=BoxUniform(...))``
over the bounds of the file's ``prior`` attribute and is trained with its
defaults (a masked autoregressive flow, 5 transforms of 50 hidden units,
z-scored inputs, batch 200, 10 per cent validation, stopping 20 epochs after
the best validation loss) unless ``--max_epochs`` caps it. Log-uniform
priors (the demo's ``mass`` and ``tau``) are given to sbi on the raw
parameter, as a user of its defaults would; ``--sbi_theta log10`` gives it
log10 of those parameters instead (then the box prior is the exact prior).

The test objects are the last ``--n_test`` usable rows of the file (never in
sbi's training set; for the checkpoint's own simulation file, the rows it
held out when ``--n_test`` is at most its ``n_test``), with one noisy
realisation each, the same for both methods. Printed side by side, measured
in this run on this CPU:

1. sbi's training: wall time, epochs run, best validation loss;
2. coverage of central credible intervals at levels 0.1-0.9 per parameter
   from ``--n_draws`` draws per object (the rank definition of ``--validate``;
   sbi's draws are those of ``posterior.sample_batched``, which rejects draws
   outside the prior), the 50 and 90 per cent levels and the largest
   |empirical - nominal|;
3. the fraction of raw draws outside the prior box (sbi: its flow sampled
   with ``reject_outside_prior=False``; ours cannot leave it by construction
   and is measured anyway);
4. ms per galaxy for ``--n_draws`` draws, sampling only (features computed
   beforehand), on the first ``--n_time`` objects in batches of ``--batch``
   objects after a warm-up call; for sbi with and without its rejection;
5. on the ``--n_bright`` brightest test objects (largest total S/N) the
   ratio of the 68 per cent redshift interval widths, sbi / ours.

Writes ``<checkpoint stem>_sbi_peer.json`` (or ``--out``; never overwritten
without ``--overwrite``). ``--sbi_posterior PATH`` saves sbi's trained
posterior there, or loads it when the file exists, so timings can be
repeated without retraining (a pickle: load only files you wrote). The load
average is printed before and after: timings are wall-clock on a possibly
shared machine. Nothing is asserted.
"""

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

LEVELS = np.round(np.arange(0.1, 0.91, 0.1), 2)


class _NoTracker:
    """sbi's tracker protocol, logging nothing (its default writes ``./sbi-logs``)."""

    log_dir = None

    def log_metric(self, name, value, step=None):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_params(self, params):
        pass

    def add_figure(self, name, figure, step=None):
        pass

    def flush(self):
        pass


def _load():
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _rows(data, n, from_end=False, block=65536):
    """The first (or last) ``n`` usable rows of a SimulationData: theta (n, D), phot (n, B)."""
    starts = range(0, data.n_rows, block)
    parts, got = [], 0
    for start in (reversed(starts) if from_end else starts):
        parts.append(data.read(start, min(start + block, data.n_rows)))
        got += len(parts[-1][0])
        if got >= n:
            break
    if from_end:
        parts = parts[::-1]
    theta = np.concatenate([p[0] for p in parts])
    phot = np.concatenate([p[1] for p in parts])
    return (theta[-n:], phot[-n:]) if from_end else (theta[:n], phot[:n])


def _snr(flux, unc, missing):
    """Total S/N (N,): sqrt of the sum over present bands of (flux/unc)^2."""
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(missing, 0.0, flux / np.where(missing, 1.0, unc))
    return np.sqrt(np.sum(s ** 2, axis=1))


def _outside(draws, lower, upper):
    """Fraction per object (N,) of draws (N, n, D) outside the box [lower, upper]."""
    inside = ((draws >= lower) & (draws <= upper)).all(axis=-1)
    return 1.0 - inside.mean(axis=1)


class _SbiTheta:
    """Parameter units <-> what sbi is given (raw, or log10 of log-uniform parameters)."""

    def __init__(self, prior, labels, mode):
        self.log = np.array([mode == "log10" and prior[t].get("distribution") == "LogUniform"
                             for t in labels])

    def forward(self, theta):
        out = np.array(theta, dtype=float)
        out[..., self.log] = np.log10(out[..., self.log])
        return out

    def inverse(self, theta):
        out = np.array(theta, dtype=float)
        out[..., self.log] = 10 ** out[..., self.log]
        return out


def main(argv=None):
    p = argparse.ArgumentParser(description="sbi's default NPE against the amortised posterior")
    p.add_argument("--simfile", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n_train", type=int, default=200_000,
                   help="first usable rows of --simfile given to sbi (one noise draw each)")
    p.add_argument("--n_test", type=int, default=2000, help="last usable rows: the test objects")
    p.add_argument("--n_draws", type=int, default=1000)
    p.add_argument("--max_epochs", type=int, default=None,
                   help="sbi's max_num_epochs (default: sbi's, i.e. until its early stopping; "
                        "sbi runs max_num_epochs + 1 epochs when it is reached)")
    p.add_argument("--sbi_theta", choices=["raw", "log10"], default="raw",
                   help="give sbi log-uniform parameters raw (default) or as log10")
    p.add_argument("--sbi_posterior", default=None,
                   help="save sbi's trained posterior here, or load it if the file exists")
    p.add_argument("--n_time", type=int, default=200, help="objects timed")
    p.add_argument("--batch", type=int, default=100, help="objects per sampling call")
    p.add_argument("--n_bright", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--out", default=None, help="JSON report (default beside the checkpoint)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no sbi progress bars")
    a = p.parse_args(argv)
    out = Path(a.out or str(Path(a.checkpoint).with_suffix("")) + "_sbi_peer.json")
    if out.exists() and not a.overwrite:
        sys.exit(f"{out} exists; pass --overwrite to replace it, or name another with --out")
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        import sbi
        from sbi.inference import NPE
        from sbi.utils import BoxUniform
    except ImportError as err:
        sys.exit(f"this benchmark needs the sbi package ({err}); install it in a separate "
                 "environment, see the docstring of bench/bench_sbi_peer.py")
    from prospect_sim.amortized import diagnostics, spec
    from prospect_sim.amortized.data import SimulationData
    from prospect_sim.amortized.posterior import AmortizedPosterior, load_checkpoint

    print(_load())
    ckpt = load_checkpoint(a.checkpoint)
    post = AmortizedPosterior.from_checkpoint(ckpt)
    labels = post.labels
    with SimulationData(a.simfile, val_fraction=0.1, n_test=0) as data:
        found = {"theta_labels": data.theta_labels, "filter_names": data.filter_names,
                 "prior": data.prior}
        diff = spec.differences(ckpt["problem"], found, what=f"simulation file {a.simfile!r}")
        if diff:
            sys.exit("the simulation file does not match the checkpoint: " + "; ".join(diff))
        if a.n_train + a.n_test > data.n_good:
            sys.exit(f"--n_train {a.n_train} + --n_test {a.n_test} exceed the {data.n_good} "
                     f"usable rows of {a.simfile}; lower them so the test rows stay unseen")
        same_file = data.identity == ckpt["simfile"]["identity"]
        theta_tr, phot_tr = _rows(data, a.n_train) if not a.sbi_posterior or \
            not os.path.exists(a.sbi_posterior) else (None, None)
        theta_te, phot_te = _rows(data, a.n_test, from_end=True)
        prior = data.prior
    if same_file and a.n_test > ckpt["simfile"]["counts"]["test"]:
        print(f"note: the checkpoint held out only its last {ckpt['simfile']['counts']['test']} "
              f"rows; the other {a.n_test - ckpt['simfile']['counts']['test']} test rows were "
              "in its validation (or training) split")
    lower = np.array([prior[t]["bounds"][0] for t in labels], dtype=float)
    upper = np.array([prior[t]["bounds"][1] for t in labels], dtype=float)
    dists = {t: prior[t].get("distribution") for t in labels}
    log_uniform = [t for t in labels if dists[t] == "LogUniform"]
    print("priors: " + ", ".join(f"{t} {dists[t]} [{lower[j]:g}, {upper[j]:g}]"
                                 for j, t in enumerate(labels)))
    if log_uniform:
        print(f"log-uniform priors ({', '.join(log_uniform)}): sbi gets them "
              + ("raw, with a box prior on the raw values (its defaults)" if a.sbi_theta == "raw"
                 else "as log10, with a box prior on log10 bounds"))
    tr = _SbiTheta(prior, labels, a.sbi_theta)
    box_lo, box_hi = tr.forward(lower), tr.forward(upper)

    def cond(theta):
        return theta[:, post.condition_index] if post.conditions else None

    # the test objects: one noisy realisation each, shared by both methods
    flux_te, unc_te, miss_te = post.noise.sample(phot_te, np.random.default_rng([a.seed, 1]))
    truth = theta_te[:, post.inferred_index]
    x_te = post.features(flux_te, unc_te, miss_te, cond(theta_te)).float()

    # sbi: train (or load) with its defaults
    report = {"versions": {"torch": torch.__version__, "sbi": sbi.__version__,
                           "numpy": np.__version__},
              "args": vars(a), "labels": labels, "levels": LEVELS.tolist(),
              "priors": {t: prior[t] for t in labels}, "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "load_before": _load(),
              "prospect_sim_training": {
                  "n_train": ckpt["simfile"]["counts"]["train"], "epochs": ckpt.get("epoch"),
                  "wall_s": sum(h.get("seconds", 0.0) for h in ckpt.get("history") or [])}}
    if a.sbi_posterior and os.path.exists(a.sbi_posterior):
        saved = torch.load(a.sbi_posterior, weights_only=False)
        posterior, report["sbi_training"] = saved["posterior"], saved["training"]
        was = {k: saved["training"].get(k) for k in ("sbi_theta", "simfile")}
        if was != {"sbi_theta": a.sbi_theta, "simfile": os.path.abspath(a.simfile)}:
            sys.exit(f"{a.sbi_posterior} was trained with {was}, not --sbi_theta "
                     f"{a.sbi_theta} on {os.path.abspath(a.simfile)}; name another file")
        print(f"\nloaded sbi's posterior from {a.sbi_posterior} (trained "
              f"{saved['training']['wall_s']:.0f} s, {saved['training']['epochs']} epochs)")
    else:
        flux, unc, miss = post.noise.sample(phot_tr, np.random.default_rng([a.seed, 0]))
        x_tr = post.features(flux, unc, miss, cond(theta_tr)).float()
        th_tr = torch.as_tensor(tr.forward(theta_tr[:, post.inferred_index]), dtype=torch.float32)
        box = BoxUniform(torch.as_tensor(box_lo, dtype=torch.float32),
                         torch.as_tensor(box_hi, dtype=torch.float32))
        kw = {} if a.max_epochs is None else {"max_num_epochs": a.max_epochs}
        print(f"\ntraining sbi's default NPE on {len(th_tr)} simulations "
              f"({x_tr.shape[1]} features, {th_tr.shape[1]} parameters){' ...' if a.quiet else ''}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(a.seed)
            inference = NPE(prior=box, tracker=_NoTracker(), show_progress_bars=not a.quiet)
            t = time.perf_counter()
            inference.append_simulations(th_tr, x_tr).train(**kw)
            wall = time.perf_counter() - t
        posterior = inference.build_posterior()
        s = inference.summary
        report["sbi_training"] = {
            "wall_s": wall, "epochs": int(s["epochs_trained"][-1]),
            "best_validation_loss": float(s["best_validation_loss"][-1]),
            "n_train": len(th_tr), "density_estimator": "maf (sbi default)",
            "sbi_theta": a.sbi_theta, "simfile": os.path.abspath(a.simfile)}
        print(f"\nsbi trained in {wall:.1f} s, {report['sbi_training']['epochs']} epochs "
              f"({wall / max(1, report['sbi_training']['epochs']):.2f} s per epoch)")
        if a.sbi_posterior:
            torch.save({"posterior": posterior, "training": report["sbi_training"]},
                       a.sbi_posterior)
            print(f"saved sbi's posterior to {a.sbi_posterior}")

    n, nt = len(truth), min(a.n_time, len(truth))

    def sbi_draws(x, reject):
        # the cap sbi itself applies to max_sampling_batch_size (passed to silence its warning)
        # no_grad: with reject_outside_prior=False sbi returns draws that require grad
        with warnings.catch_warnings(), torch.no_grad():
            warnings.filterwarnings("ignore", message=".*reject_outside_prior.*")
            d = posterior.sample_batched((a.n_draws,), x=x, reject_outside_prior=reject,
                                         max_sampling_batch_size=max(1, 100_000 // len(x)),
                                         show_progress_bars=False)
        return tr.inverse(d.transpose(0, 1).numpy())  # (N, n, D), parameter units

    def ours_draws(sl, gen):
        c = cond(theta_te[sl])
        return post.sample(flux_te[sl], unc_te[sl], miss_te[sl], c, a.n_draws, gen)[0]

    def run(draw):
        """Draws (N, n, D) for every test object, and ms per galaxy on the first nt."""
        draw(slice(0, 1))  # warm-up
        chunks, t_timed, n_timed = [], 0.0, 0
        for s in range(0, n, a.batch):
            sl = slice(s, min(s + a.batch, n))
            t = time.perf_counter()
            chunks.append(draw(sl))
            if s < nt:  # whole batches are timed
                t_timed += time.perf_counter() - t
                n_timed += sl.stop - sl.start
        return np.concatenate(chunks), 1e3 * t_timed / n_timed

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(a.seed + 1)
        d_sbi, ms_sbi = run(lambda sl: sbi_draws(x_te[sl], True))
        raw_sbi, ms_sbi_raw = run(lambda sl: sbi_draws(x_te[sl], False))
    gen = torch.Generator().manual_seed(a.seed + 1)
    d_ours, ms_ours = run(lambda sl: ours_draws(sl, gen))

    methods = {"sbi": (d_sbi, raw_sbi, ms_sbi), "prospect_sim": (d_ours, d_ours, ms_ours)}
    for name, (d, raw, ms) in methods.items():
        cov = diagnostics.coverage(diagnostics.sbc_ranks(d, truth), a.n_draws, LEVELS)
        out_frac = _outside(raw, lower, upper)
        report[name] = {
            "coverage": {t: cov[:, j].tolist() for j, t in enumerate(labels)},
            "max_coverage_error": {t: float(np.max(np.abs(cov[:, j] - LEVELS)))
                                   for j, t in enumerate(labels)},
            "raw_outside_prior": float(out_frac.mean()),
            "raw_outside_prior_max_per_object": float(out_frac.max()),
            "ms_per_galaxy": ms}
    report["sbi"]["ms_per_galaxy_raw"] = ms_sbi_raw

    snr = _snr(flux_te, unc_te, miss_te)
    bright = np.argsort(snr)[::-1][:a.n_bright]
    jz = labels.index("zred") if "zred" in labels else 0

    def width(d):
        q16, q84 = np.percentile(d[:, jz], [16, 84])
        return float(q84 - q16)

    report["brightest"] = [{"test_index": int(i), "snr": float(snr[i]),
                            "truth": float(truth[i, jz]),
                            "median_sbi": float(np.median(d_sbi[i, :, jz])),
                            "median_prospect_sim": float(np.median(d_ours[i, :, jz])),
                            "width68_sbi": width(d_sbi[i]),
                            "width68_prospect_sim": width(d_ours[i]),
                            "ratio": width(d_sbi[i]) / width(d_ours[i])} for i in bright]

    _print(report, labels, n, a, jz)
    report["load_after"] = _load()
    print(report["load_after"])
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


def _print(report, labels, n, a, jz):
    s, o = report["sbi"], report["prospect_sim"]
    tr, ours = report["sbi_training"], report["prospect_sim_training"]
    i50, i90 = int(np.argmin(np.abs(LEVELS - 0.5))), int(np.argmin(np.abs(LEVELS - 0.9)))
    print(f"\n{n} test objects, {a.n_draws} draws each; sbi: default NPE trained on "
          f"{tr['n_train']} simulations in {tr['wall_s']:.0f} s ({tr['epochs']} epochs); ours: "
          f"{ours['n_train']} simulations, {ours['epochs']} epochs, {ours['wall_s']:.0f} s "
          "(fresh noise every epoch)")
    print(f"{'':>10} | {'coverage 50%':^17} | {'coverage 90%':^17} | {'max |emp - nom|':^17}")
    print(f"{'parameter':>10} | {'sbi':>8} {'ours':>8} | {'sbi':>8} {'ours':>8} | "
          f"{'sbi':>8} {'ours':>8}")
    for t in labels:
        print(f"{t:>10} | {s['coverage'][t][i50]:8.3f} {o['coverage'][t][i50]:8.3f} | "
              f"{s['coverage'][t][i90]:8.3f} {o['coverage'][t][i90]:8.3f} | "
              f"{s['max_coverage_error'][t]:8.3f} {o['max_coverage_error'][t]:8.3f}")
    print(f"{'raw draws outside the prior':>40}: sbi {100 * s['raw_outside_prior']:6.2f}%   "
          f"ours {100 * o['raw_outside_prior']:6.2f}%")
    print(f"{f'ms per galaxy, {a.n_draws} draws':>40}: sbi {s['ms_per_galaxy']:6.2f} "
          f"(raw flow {s['ms_per_galaxy_raw']:.2f})   ours {o['ms_per_galaxy']:6.2f}   "
          f"ratio {s['ms_per_galaxy'] / o['ms_per_galaxy']:.1f}")
    print(f"\n{len(report['brightest'])} brightest test objects: {labels[jz]} 68% widths")
    print(f"{'S/N':>8} {'truth':>7} {'med sbi':>8} {'med ours':>8} {'w sbi':>8} {'w ours':>8} "
          f"{'sbi/ours':>8}")
    for b in report["brightest"]:
        print(f"{b['snr']:8.1f} {b['truth']:7.3f} {b['median_sbi']:8.3f} "
              f"{b['median_prospect_sim']:8.3f} {b['width68_sbi']:8.4f} "
              f"{b['width68_prospect_sim']:8.4f} {b['ratio']:8.2f}")


if __name__ == "__main__":
    sys.exit(main())
