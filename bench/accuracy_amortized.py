"""Accuracy of a trained amortised posterior on the demo model: coverage, recovery, dynesty.

    python bench/accuracy_amortized.py --checkpoint out/demo/demo_flow.pt \\
        --simfile out/demo/demo_sims.h5 --n_validate 2000 --n_mocks 5 --n_recovery 1000

Prints, measured in this run, and writes ``<checkpoint stem>_accuracy.json``
and ``<checkpoint stem>_recovery.png``:

1. coverage on ``--n_validate`` held-out simulations (``--validate``): the
   largest |empirical - nominal| over levels 0.1-0.9 per parameter (target
   <= 0.05), and the TARP deviation;
2. parameter recovery on ``--n_recovery`` fresh prior draws with the
   checkpoint's noise: per parameter the median bias and the scatter
   (1.4826 x median absolute deviation) of the posterior median about the
   truth (log10 for log-uniform priors), plotted against the truth;
3. ``--n_mocks`` mock galaxies (seeded; the two brightest of 200 prior draws,
   one whose amortised p(z) has two peaks, the rest at random), noise from
   the checkpoint's noise model: a dynesty fit through
   ``prospect.fitting.fit_model`` and the amortised posterior (raw and
   importance-weighted, ``--n_draws`` draws) of the same noisy photometry.
   dynesty runs ``--dynesty_runs`` times (unseeded, as Prospector runs it);
   the reference is all runs merged (``dynesty.utils.merge_runs``), and run
   2 against run 1 shows how precise one dynesty run is. Per parameter,
   ``|median_flow - median_dynesty| / sd_dynesty`` (target <= 0.3) and the
   68% width ratio flow/dynesty (target within 30%); a mock passes when every
   parameter does; the count of passing mocks (target: 4 of 5); for the
   two-peaked mock the fraction of posterior mass in the higher-z peak; the
   wall time of each fit and of each amortised posterior, and their ratio.
   With ``--reference_draws N`` every method is also compared with the exact
   posterior (N flow draws weighted by the exact likelihood); with
   ``--dynesty_runs 0`` only that comparison is made (minutes, not hours).
   Dynesty's default here (``--sample rwalk --walks 32``) can sit 0.4 sd
   off the exact posterior on bright mocks; ``--sample unif`` agreed with it
   to 0.08 sd on the four mocks fitted, at ~4x the cost (65 min against
   15 for rwalk on a bright mock on this machine; ``bench/RESULTS.rst``).
   ``--sbi_posterior PATH`` adds sbi's NPE, as trained and saved by
   ``bench/bench_sbi_peer.py --sbi_posterior PATH``, to the comparison with
   the exact posterior and to the two-peak masses (run this script with the
   Python that has sbi).
   ``--bfloat16`` samples the flow as ``--infer --bfloat16`` does (its
   matrix products in bfloat16): the coverage and recovery use those draws,
   and the comparison with the exact posterior and the two-peak masses add
   them beside the float32 flow's ("flow bf16").

The accuracy targets of issue 6 are for a network trained on >= 1e6
simulations; this script only measures. Nothing is asserted.
"""

import argparse
import json
import pickle
import sys
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


def _quantiles(samples, weights, qs=(0.16, 0.5, 0.84)):
    out = []
    for d in range(samples.shape[1]):
        order = np.argsort(samples[:, d])
        cw = np.cumsum(weights[order])
        cw /= cw[-1]
        out.append(samples[order, d][np.searchsorted(cw, qs)])
    return np.array(out).T  # (3, D)


def main(argv=None):
    p = argparse.ArgumentParser(description="accuracy of the amortised posterior")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--simfile", required=True)
    p.add_argument("--n_validate", type=int, default=2000)
    p.add_argument("--validate_draws", type=int, default=500)
    p.add_argument("--n_mocks", type=int, default=5)
    p.add_argument("--nlive", type=int, default=200)
    p.add_argument("--dlogz", type=float, default=0.1, help="dynesty's nested_dlogz_init")
    p.add_argument("--sample", default="rwalk", help="dynesty's nested_sample")
    p.add_argument("--walks", type=int, default=32, help="dynesty's nested_walks (rwalk)")
    p.add_argument("--n_draws", type=int, default=20000,
                   help="amortised draws per mock (raw quantiles and importance weights)")
    p.add_argument("--dynesty_runs", type=int, default=2,
                   help="independent dynesty fits per mock, merged into the reference "
                        "(0: no dynesty; compare with --reference_draws only)")
    p.add_argument("--cache", default=None,
                   help="folder to keep each dynesty fit in (pickled) and reuse on later runs")
    p.add_argument("--reference_draws", type=int, default=0,
                   help="also compare every method with the exact posterior from this many "
                        "importance-weighted flow draws (e.g. 400000; 0: off)")
    p.add_argument("--reference_scale", type=float, default=1.0,
                   help="draw the reference from the defensive mixture of the flow and its "
                        "this-much-wider version (e.g. 2: more ESS on bright mocks; as "
                        "--proposal_scale)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--n_recovery", type=int, default=1000)
    p.add_argument("--sbi_posterior", default=None,
                   help="also compare sbi's NPE saved by bench_sbi_peer.py --sbi_posterior "
                        "(run this script with the Python that has sbi)")
    p.add_argument("--bfloat16", action="store_true",
                   help="coverage and recovery with the flow's products in bfloat16, and "
                        "those draws added to the mock comparisons")
    p.add_argument("--only", default=None,
                   help="comma-separated mock numbers to fit (e.g. 0,1 here and 2,3,4 in a "
                        "second process: the mocks are chosen the same way in both)")
    a = p.parse_args(argv)
    if a.dynesty_runs < 1 and a.n_mocks > 0 and a.reference_draws < 1:
        p.error("--dynesty_runs 0 needs --reference_draws (something to compare with)")

    from prospect_sim.amortized.posterior import AmortizedPosterior, load_checkpoint
    from prospect_sim.amortized.validate import validate

    t = time.perf_counter()
    report = json.loads(Path(validate(a.checkpoint, a.simfile, dict(
        n_validate=a.n_validate, validate_draws=a.validate_draws, bfloat16=a.bfloat16),
        quiet=True)).read_text())
    levels = np.array(report["levels"])
    inner = (levels >= 0.1 - 1e-9) & (levels <= 0.9 + 1e-9)
    print(f"coverage on {report['n_objects']} held-out simulations"
          f"{' (bfloat16 products)' if a.bfloat16 else ''} "
          f"({time.perf_counter() - t:.0f} s): max |empirical - nominal| at levels 0.1-0.9")
    for lab, cov in report["coverage"].items():
        print(f"  {lab:>10}: {np.max(np.abs(np.array(cov)[inner] - levels[inner])):.3f}")
    print(f"  TARP max deviation: {report['tarp']['max_error']:.3f}")

    results = {"coverage_max_dev": {lab: float(np.max(np.abs(np.array(cov)[inner]
                                                             - levels[inner])))
                                    for lab, cov in report["coverage"].items()},
               "tarp_max_error": float(report["tarp"]["max_error"])}
    model, obs, sps = _demo()
    ckpt = load_checkpoint(a.checkpoint)
    post = AmortizedPosterior.from_checkpoint(ckpt)
    labels = post.labels
    stem = str(Path(a.checkpoint).with_suffix(""))
    if a.n_recovery > 0:
        results["recovery"] = _recovery(post, model, sps, obs, a, stem + "_recovery.png")
    if a.n_mocks > 0:
        results["mocks"] = _mocks(post, ckpt, model, sps, obs, a)
    tag = "" if a.only is None else "_" + a.only.replace(",", "")
    Path(stem + f"_accuracy{tag}.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {stem}_accuracy{tag}.json")
    return 0


def _log_params(model, labels):
    """Labels whose prior is log-uniform: compared in log10."""
    return {lab for lab in labels
            if type(model.config_dict[lab].get("prior")).__name__ == "LogUniform"}


def _recovery(post, model, sps, obs, a, png):
    """Bias and scatter of posterior medians on fresh prior draws, and a plot."""
    import torch
    from prospect_sim.forward import predict_batch, prior_transform
    rng = np.random.default_rng(a.seed + 1)
    theta = prior_transform(model, rng.random((a.n_recovery, len(model.theta))))
    phot, _ = predict_batch(model, sps, obs, theta)
    flux, unc, missing = post.noise.sample(phot, rng)
    t = time.perf_counter()
    draws, _ = post.sample(flux, unc, missing, None, 500, torch.Generator().manual_seed(1),
                           density=False, gemm_dtype=post.gemm_dtype(a.bfloat16))
    t = time.perf_counter() - t
    q = np.quantile(draws, [0.16, 0.5, 0.84], axis=1)             # (3, N, D)
    truth = theta[:, post.inferred_index]
    logs = _log_params(model, post.labels)
    out = {}
    print(f"\nrecovery on {a.n_recovery} prior draws (posterior median - truth; "
          f"500 draws each, {1e3 * t / a.n_recovery:.1f} ms per galaxy):")
    print(f"  {'param':>10} {'bias':>9} {'scatter':>9} {'prior sd':>9}")
    for j, lab in enumerate(post.labels):
        f = np.log10 if lab in logs else (lambda x: x)
        d = f(q[1, :, j]) - f(truth[:, j])
        bias = float(np.median(d))
        nmad = float(1.4826 * np.median(np.abs(d - bias)))
        out[lab] = {"bias": bias, "scatter": nmad, "log10": lab in logs,
                    "prior_sd": float(np.std(f(truth[:, j])))}
        print(f"  {lab:>10} {bias:9.3g} {nmad:9.3g} {out[lab]['prior_sd']:9.3g}"
              + ("  (log10)" if lab in logs else ""))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(post.labels)
    fig, axes = plt.subplots(2, (n + 1) // 2, figsize=(4 * ((n + 1) // 2), 8))
    show = slice(0, min(400, a.n_recovery))
    for j, (lab, ax) in enumerate(zip(post.labels, axes.ravel())):
        f = np.log10 if lab in logs else (lambda x: x)
        x, y = f(truth[show, j]), f(q[1, show, j])
        err = np.abs(np.array([y - f(q[0, show, j]), f(q[2, show, j]) - y]))
        ax.errorbar(x, y, yerr=err, fmt=".", ms=2, lw=0.3, alpha=0.6)
        lim = [min(x.min(), y.min()), max(x.max(), y.max())]
        ax.plot(lim, lim, "k-", lw=0.8)
        ax.set_xlabel(("log10 " if lab in logs else "") + lab + " (truth)")
        ax.set_ylabel("posterior median, 16-84%")
        ax.set_title(f"bias {out[lab]['bias']:.3g}, scatter {out[lab]['scatter']:.3g}")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    print(f"  plot: {png}")
    return out


def _two_peaks(z, lo, hi, bins=30):
    """Whether draws ``z`` have two separated peaks; returns (bool, valley z)."""
    h, edges = np.histogram(z, bins=bins, range=(lo, hi))
    h = np.convolve(h, np.ones(3) / 3, mode="same")
    peaks = [i for i in range(1, bins - 1) if h[i] >= h[i - 1] and h[i] > h[i + 1]
             and h[i] >= 0.2 * h.max()]
    for p1, p2 in zip(peaks[:-1], peaks[1:]):
        valley = p1 + int(np.argmin(h[p1:p2 + 1]))
        if h[valley] <= 0.5 * min(h[p1], h[p2]) and p2 - p1 >= 4:
            return True, 0.5 * (edges[valley] + edges[valley + 1])
    return False, None


def _mocks(post, ckpt, model, sps, obs, a):
    """dynesty vs the amortised posterior (raw and importance-weighted) on mocks."""
    import torch
    from dynesty.utils import merge_runs
    from prospect_sim.amortized.importance import Reweighter, ess, weighted_quantiles
    from prospect_sim.forward import predict_batch, prior_transform

    rw = Reweighter(model, sps, obs, ckpt["problem"])
    sbi_draws = None if a.sbi_posterior is None else _sbi_sampler(a.sbi_posterior, post, ckpt)
    rng = np.random.default_rng(a.seed)
    theta = prior_transform(model, rng.random((200, len(model.theta))))
    phot, _ = predict_batch(model, sps, obs, theta)
    noisy = post.noise.sample(phot, rng)                            # one noisy mock each
    order = [int(i) for i in np.argsort(-np.nansum(phot, axis=1))]
    picks = [(i, "bright") for i in order[:min(2, a.n_mocks)]]
    labels = post.labels
    zj = labels.index("zred") if "zred" in labels else None
    valley = None
    if zj is not None and a.n_mocks > 2:
        zlo, zhi = model.config_dict["zred"]["prior"].range
        for i in order[2:]:
            draws, _ = post.sample(noisy[0][i:i + 1], noisy[1][i:i + 1], noisy[2][i:i + 1],
                                   None, 2000, torch.Generator().manual_seed(i))
            two, v = _two_peaks(draws[0, :, zj], zlo, zhi)
            if two:
                picks.append((i, "two-peaked z"))
                valley = v
                break
    rest = [i for i in order[2:] if i not in {p for p, _ in picks}]
    for i in rng.choice(rest, max(0, a.n_mocks - len(picks)), replace=False):
        picks.append((int(i), "random"))

    if a.dynesty_runs > 0:
        print(f"\n{'mock':>4} {'param':>10} {'truth':>10} {'dyn med':>10} {'|dmed|/sd':>9} "
              f"{'w68 ratio':>9} {'IS |dmed|/sd':>12} {'IS w68':>7} {'dyn2 |dmed|/sd':>14} "
              f"{'dyn2 w68':>8}")
    out = []
    only = None if a.only is None else {int(k) for k in a.only.split(",")}
    for k, (i, kind) in enumerate(picks):
        if only is not None and k not in only:
            continue
        flux, unc, missing = (x[i:i + 1] for x in noisy)
        mock = dict(obs, maggies=flux[0], maggies_unc=unc[0], phot_mask=~missing[0])
        runs, t_dyn = _dynesty(model, sps, mock, a, f"seed{a.seed}_mock{i}")
        res = merge_runs(runs) if len(runs) > 1 else (runs[0] if runs else None)
        dq = None if res is None else _dynesty_quantiles(res, post.inferred_index)
        single = [_dynesty_quantiles(r, post.inferred_index) for r in runs]
        t = time.perf_counter()
        draws, log_q = post.sample(flux, unc, missing, None, a.n_draws,
                                   torch.Generator().manual_seed(k))
        t_flow = time.perf_counter() - t
        fq = np.quantile(draws[0], [0.16, 0.5, 0.84], axis=0)
        low = None                                   # the same base draws, bfloat16 products
        if a.bfloat16:
            low = post.sample(flux, unc, missing, None, a.n_draws,
                              torch.Generator().manual_seed(k), density=False,
                              gemm_dtype=post.gemm_dtype(True))[0][0]
        log_w = rw.log_weights(_full(draws, post, ckpt), log_q, flux, unc, missing)
        iq = weighted_quantiles(draws, log_w, [0.16, 0.5, 0.84])[:, 0]
        row = {"index": i, "kind": kind, "snr": float(np.sqrt(np.sum((flux / unc) ** 2))),
               "t_dynesty": t_dyn, "t_flow": t_flow, "ess": float(ess(log_w)[0]),
               "params": {}}
        versus = {} if dq is None else {"": _versus(fq, dq), "is_": _versus(iq, dq)}
        if len(single) > 1:                          # one dynesty run against another
            versus["dyn2_"] = _versus(single[1], single[0])
        for j, lab in enumerate(labels):
            p = {"truth": float(theta[i, post.inferred_index[j]])}
            if dq is not None:
                p["dyn_median"] = float(dq[1, j])
            for prefix, (dmed, w68) in versus.items():
                p[prefix + "dmed"], p[prefix + "w68"] = float(dmed[j]), float(w68[j])
            row["params"][lab] = p
            if dq is not None:
                print(f"{k:>4} {lab:>10} {p['truth']:10.4g} {p['dyn_median']:10.4g} "
                      f"{p['dmed']:9.2f} {p['w68']:9.2f} {p['is_dmed']:12.2f} "
                      f"{p['is_w68']:7.2f} {p.get('dyn2_dmed', np.nan):14.2f} "
                      f"{p.get('dyn2_w68', np.nan):8.2f}")
        for prefix in versus:
            row[prefix + "pass"] = _passes(row["params"], prefix)
        # sbi's draws serve the reference comparison and the two-peak masses only
        wanted = sbi_draws is not None and (a.reference_draws or kind == "two-peaked z")
        sbi = sbi_draws((flux, unc, missing), a.n_draws, k) if wanted else None
        reference = None                             # (draws, log weights) of the reference
        if a.reference_draws:
            methods = {"flow": fq, "importance": iq}
            if low is not None:
                methods["flow bf16"] = np.quantile(low, [0.16, 0.5, 0.84], axis=0)
            if sbi is not None:
                methods["sbi"] = np.quantile(sbi, [0.16, 0.5, 0.84], axis=0)
            if dq is not None:
                methods["dynesty merged"] = dq
                methods.update({f"dynesty run {r + 1}": q for r, q in enumerate(single)})
            row["reference"], ref_draws, ref_log_w = _against_reference(
                post, rw, ckpt, (flux, unc, missing), a, k, methods, labels)
            reference = (ref_draws, ref_log_w)
        if kind == "two-peaked z":
            row["high_z_mass"] = _high_z_mass(runs, res, post.inferred_index[zj], zj, draws[0],
                                              log_w[0], valley, reference)
            if low is not None:
                row["high_z_mass"]["flow_bf16"] = float(np.mean(low[:, zj] > valley))
            if sbi is not None:                      # one hump, or two peaks as the flow's?
                row["high_z_mass"].update(sbi=float(np.mean(sbi[:, zj] > valley)),
                                          sbi_two_peaks=_two_peaks(sbi[:, zj], zlo, zhi)[0])
        out.append(row)
        against = ("" if dq is None else f"pass {row['pass']} (importance {row['is_pass']}); "
                   f"dynesty {t_dyn:.0f} s, ")
        print(f"     {kind}, total S/N {row['snr']:.0f}: {against}flow {1e3 * t_flow:.0f} ms "
              f"({a.n_draws} draws{'' if dq is None else f', {t_dyn / t_flow:,.0f}x'}), "
              f"IS ESS {row['ess']:.0f}{_notes(row)}", flush=True)
    _summary(out)
    return out


def _dynesty(model, sps, mock, a, tag):
    """``--dynesty_runs`` fits of ``mock`` (dynesty Results) and the mean seconds per fit.

    Each fit runs as the ``--dynesty`` mode runs it (the unused model spectrum
    skipped).  With ``--cache DIR`` every run is pickled there under a name
    made of ``tag``, a digest of the mock's photometry (a changed noise model
    makes new mocks) and the dynesty settings, and read back by a later call
    instead of fitting again (so the reference can be reused).
    """
    import hashlib
    from prospect.fitting import fit_model
    from prospect_sim.sps import _compat
    _compat.set_photometry_only(model, mock)
    runs, seconds = [], []
    if a.dynesty_runs < 1:
        return runs, float("nan")
    digest = hashlib.sha1(np.concatenate([mock["maggies"], mock["maggies_unc"],
                                          mock["phot_mask"]]).astype("<f8").tobytes())
    tag = f"{tag}_{digest.hexdigest()[:10]}"
    for r in range(a.dynesty_runs):
        name = f"{tag}_nlive{a.nlive}_{a.sample}{a.walks}_dlogz{a.dlogz}_run{r}.pkl"
        path = None if a.cache is None else Path(a.cache) / name
        if path is not None and path.exists():
            with open(path, "rb") as fh:     # written by this script
                res, sec = pickle.load(fh)
        else:
            t = time.perf_counter()
            res = fit_model(mock, model, sps, noise=(None, None), dynesty=True, optimize=False,
                            emcee=False, nested_nlive_init=a.nlive, nested_dlogz_init=a.dlogz,
                            nested_sample=a.sample, nested_walks=a.walks, nested_maxbatch=0,
                            verbose=False, print_progress=False)["sampling"][0]
            sec = time.perf_counter() - t
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "wb") as fh:
                    pickle.dump((res, sec), fh)
        runs.append(res)
        seconds.append(sec)
    return runs, float(np.mean(seconds))


def _dynesty_quantiles(res, index):
    return _quantiles(res["samples"][:, index], np.exp(res["logwt"] - res["logz"][-1]))


def _full(draws, post, ckpt):
    """Draws of the inferred parameters as full parameter vectors (conditions unset)."""
    full = np.empty(draws.shape[:2] + (len(ckpt["problem"]["theta_labels"]),))
    full[..., post.inferred_index] = draws
    return full


def _versus(q, ref):
    """Per parameter: |median - reference median| / reference sd, and the 68% width ratio.

    ``q`` and ``ref`` are (3, D) quantiles at 0.16, 0.5, 0.84; sd is half the
    reference's 68% width.
    """
    width = ref[2] - ref[0]
    return np.abs(q[1] - ref[1]) / (width / 2), (q[2] - q[0]) / width


def _within(dmed, w68):
    """Issue 6's test: every parameter within 0.3 sd in median and 30% in width."""
    return bool(np.all(np.asarray(dmed) <= 0.3) and np.all(np.abs(np.asarray(w68) - 1) <= 0.3))


def _passes(params, prefix):
    """:func:`_within` for the ``prefix`` comparison stored per parameter."""
    return _within([p[prefix + "dmed"] for p in params.values()],
                   [p[prefix + "w68"] for p in params.values()])


def _against_reference(post, rw, ckpt, data, a, k, methods, labels, batch=50_000):
    """Every method against the exact posterior, by importance sampling many flow draws.

    Returns the summary (ESS, medians, per-method offsets) and the weighted
    draws ``(n, D)``, ``(n,)`` themselves.

    ``--reference_draws`` flow draws, weighted with the exact likelihood, give
    the posterior's quantiles to a precision set by their ESS (reported),
    independently of dynesty; the flow proposal covers the posterior as long
    as the ESS is large.
    """
    import torch
    from prospect_sim.amortized.importance import ess, weighted_quantiles
    flux, unc, missing = data
    draws, log_w = [], []
    for start in range(0, a.reference_draws, batch):
        n = min(batch, a.reference_draws - start)
        d, log_q = post.sample(flux, unc, missing, None, n,
                               torch.Generator().manual_seed(10_000 * (k + 1) + start),
                               scale=a.reference_scale)
        draws.append(d)
        log_w.append(rw.log_weights(_full(d, post, ckpt), log_q, flux, unc, missing))
    draws, log_w = np.concatenate(draws, axis=1), np.concatenate(log_w, axis=1)
    ref = weighted_quantiles(draws, log_w, [0.16, 0.5, 0.84])[:, 0]
    out = {"ess": float(ess(log_w)[0]), "n_draws": a.reference_draws,
           "scale": a.reference_scale,
           "median": ref[1].tolist(), "methods": {}}
    print(f"     against the importance-sampling reference ({a.reference_draws:,} flow "
          f"draws, base x{a.reference_scale:g}, ESS {out['ess']:,.0f}): |dmed|/sd and w68 per "
          f"parameter ({', '.join(labels)})")
    for name, q in methods.items():
        dmed, w68 = _versus(q, ref)
        ok = _within(dmed, w68)
        out["methods"][name] = {"dmed": dmed.tolist(), "w68": w68.tolist(), "pass": ok}
        print(f"       {name:>16}: " + " ".join(f"{d:4.2f}/{w:4.2f}" for d, w in zip(dmed, w68))
              + f"   pass {ok}")
    return out, draws[0], log_w[0]


def _high_z_mass(runs, merged, zcol, zj, flow_draws, log_w, valley, reference):
    """Posterior mass above the valley of a two-peaked p(z), per method."""
    def weighted(z, lw):
        w = np.exp(lw - np.max(lw))
        return float(np.sum(w[z > valley]) / np.sum(w))
    out = {"valley_z": float(valley), "flow": float(np.mean(flow_draws[:, zj] > valley)),
           "importance": weighted(flow_draws[:, zj], log_w),
           "dynesty_runs": [weighted(r["samples"][:, zcol], r["logwt"]) for r in runs]}
    if merged is not None:
        out["dynesty"] = weighted(merged["samples"][:, zcol], merged["logwt"])
    if reference is not None:
        ref_draws, ref_log_w = reference
        out["reference"] = weighted(ref_draws[:, zj], ref_log_w)
    return out


def _sbi_sampler(path, post, ckpt):
    """``draw(data, n, k)``: ``n`` draws (n, D) in parameter units from sbi's NPE saved
    by ``bench_sbi_peer.py --sbi_posterior path``, for one mock ``data`` = (flux, unc,
    missing) (1, B) each; rejection of out-of-prior draws on, as sbi samples by default.
    """
    import torch
    from bench_sbi_peer import _SbiTheta
    saved = torch.load(path, weights_only=False)      # a pickle written by bench_sbi_peer
    posterior, mode = saved["posterior"], saved["training"]["sbi_theta"]
    tr = _SbiTheta(ckpt["problem"]["prior"], post.labels, mode)
    print(f"sbi: NPE from {path} ({saved['training']['n_train']} simulations, "
          f"{saved['training']['epochs']} epochs, theta {mode})")

    def draw(data, n, k):
        x = post.features(*data, None).float()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(1000 + k)
            d = posterior.sample((n,), x=x[0], show_progress_bars=False)
        return tr.inverse(d.numpy())

    return draw


def _notes(row):
    """The end of a mock's summary line: two-peak masses and dynesty's self-agreement."""
    text = ""
    hz = row.get("high_z_mass")
    if hz:
        text += f"; mass above z={hz['valley_z']:.2f}: "
        if "dynesty" in hz:
            text += (f"dynesty {hz['dynesty']:.2f} (runs "
                     f"{', '.join(f'{x:.2f}' for x in hz['dynesty_runs'])}), ")
        text += f"flow {hz['flow']:.2f}, importance-weighted {hz['importance']:.2f}"
        if "flow_bf16" in hz:
            text += f", flow bf16 {hz['flow_bf16']:.2f}"
        if "sbi" in hz:
            text += (f", sbi {hz['sbi']:.2f} "
                     f"({'two peaks' if hz['sbi_two_peaks'] else 'no second peak'})")
        if "reference" in hz:
            text += f", reference {hz['reference']:.2f}"
    if "dyn2_pass" in row:
        text += f"; dynesty run 2 vs run 1 passes: {row['dyn2_pass']}"
    return text


def _summary(rows):
    """Pass counts and mean offsets over all mocks and parameters."""
    if not rows:
        return
    params = [p for r in rows for p in r["params"].values()]

    def mean(prefix):
        return (np.mean([p[prefix + "dmed"] for p in params]),
                np.mean([abs(p[prefix + "w68"] - 1) for p in params]))

    n = len(rows)
    if all("pass" in r for r in rows):
        (d0, w0), (d1, w1) = mean(""), mean("is_")
        print(f"\npassing mocks against dynesty: {sum(r['pass'] for r in rows)} of {n} raw, "
              f"{sum(r['is_pass'] for r in rows)} of {n} importance-weighted; mean |dmed|/sd "
              f"{d0:.2f} -> {d1:.2f}, mean |w68 - 1| {w0:.2f} -> {w1:.2f} with importance "
              f"weights")
    if all("dyn2_pass" in r for r in rows):
        d2, w2 = mean("dyn2_")
        print(f"dynesty run 2 against run 1: passes {sum(r['dyn2_pass'] for r in rows)} of {n}; "
              f"mean |dmed|/sd {d2:.2f}, mean |w68 - 1| {w2:.2f}")
    refs = [r["reference"] for r in rows if "reference" in r]
    if refs:
        for name in refs[0]["methods"]:
            got = [ref["methods"][name] for ref in refs if name in ref["methods"]]
            dmed = np.mean([np.mean(g["dmed"]) for g in got])
            dw = np.mean([np.mean(np.abs(np.array(g["w68"]) - 1)) for g in got])
            print(f"against the reference, {name:>16}: passes {sum(g['pass'] for g in got)} "
                  f"of {len(got)}; mean |dmed|/sd {dmed:.2f}, mean |w68 - 1| {dw:.2f}")


if __name__ == "__main__":
    sys.exit(main())
