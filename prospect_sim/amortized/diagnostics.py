r"""Calibration diagnostics of posterior samples against known truths, and plots.

For held-out simulations with true parameters :math:`\theta^*_i` and
posterior draws :math:`\theta_{i1..n}`:

- *rank* (simulation-based calibration, Talts et al. 2018):
  :math:`r_{id} = \#\{k : \theta_{ikd} < \theta^*_{id}\}`, uniform on
  :math:`0..n` for a calibrated posterior;
- *coverage* of the central credible interval of level :math:`a`: the
  fraction of objects with :math:`|r_{id}/n - 1/2| \le a/2`; equals
  :math:`a` for a calibrated posterior;
- *TARP* (Lemos et al. 2023): with a random reference point :math:`\rho_i`
  per object (uniform in the prior box, parameters scaled to [0, 1]),
  :math:`f_i = \frac1n\#\{k : \|\theta_{ik} - \rho_i\| < \|\theta^*_i - \rho_i\|\}`
  and the expected coverage :math:`\mathrm{ECP}(\alpha) = \frac1N\#\{i : f_i < \alpha\}`,
  which equals :math:`\alpha` for all :math:`\alpha` if and only if the
  joint posterior is calibrated.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> truth = rng.normal(size=(400, 2)); x = truth + rng.normal(size=(400, 2))
>>> samples = (x / 2)[:, None, :] + rng.normal(size=(400, 300, 2)) / np.sqrt(2)
>>> cov = coverage(sbc_ranks(samples, truth), 300, [0.5, 0.9])
>>> bool(np.all(np.abs(cov - [[0.5], [0.9]]) < 0.07))
True
"""

import numpy as np

__all__ = ["sbc_ranks", "coverage", "tarp", "LEVELS", "plot_coverage", "plot_ranks",
           "plot_tarp", "plot_corner", "log_scaled"]

#: Credibility levels reported by ``--validate``.
LEVELS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def sbc_ranks(samples, truth):
    """Ranks (N, D) of truths (N, D) among draws (N, n, D)."""
    return (samples < truth[:, None, :]).sum(axis=1)


def coverage(ranks, n_draws, levels=LEVELS):
    """Empirical coverage (L, D) of central intervals at each level."""
    r = (np.asarray(ranks) + 0.5) / (n_draws + 1)
    levels = np.asarray(levels, dtype=float)
    return (np.abs(r[None] - 0.5) <= levels[:, None, None] / 2).mean(axis=1)


def tarp(samples, truth, lower, upper, rng, alphas=None):
    """TARP expected coverage.

    Parameters
    ----------
    samples : (N, n, D); truth : (N, D)
    lower, upper : (D,) finite scaling bounds (the prior box)
    rng : numpy.random.Generator
    alphas : (A,) array, optional

    Returns
    -------
    alphas : (A,), ecp : (A,)
    """
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    scale = np.where(np.isfinite(upper - lower), upper - lower, 1.0)
    lo = np.where(np.isfinite(lower), lower, 0.0)
    s = (samples - lo) / scale
    t = (truth - lo) / scale
    ref = rng.random(t.shape)
    d_s = np.linalg.norm(s - ref[:, None, :], axis=-1)
    d_t = np.linalg.norm(t - ref, axis=-1)
    f = (d_s < d_t[:, None]).mean(axis=1)
    if alphas is None:
        alphas = np.linspace(0, 1, 51)
    ecp = (f[None, :] < alphas[:, None]).mean(axis=1)
    return alphas, ecp


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def plot_coverage(levels, cov, labels, path, n_objects, tolerance=0.05):
    """Empirical vs nominal coverage per parameter, with a +-tolerance band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.fill_between([0, 1], [-tolerance, 1 - tolerance], [tolerance, 1 + tolerance],
                    color="0.85", label=f"$\\pm${tolerance}")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    for j, lab in enumerate(labels):
        ax.plot(levels, cov[:, j], "o-", ms=3, label=lab)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal credibility level",
           ylabel="empirical coverage", title=f"coverage on {n_objects} held-out simulations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ranks(ranks, n_draws, labels, path, n_bins=20):
    """SBC rank histograms with the 99% band of a uniform histogram."""
    plt = _plt()
    from scipy.stats import binom
    d = len(labels)
    cols = min(d, 4)
    rows = -(-d // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.5 * rows), squeeze=False)
    n = len(ranks)
    lo, hi = binom.ppf([0.005, 0.995], n, 1 / n_bins)
    for j, ax in enumerate(axes.ravel()):
        if j >= d:
            ax.axis("off")
            continue
        ax.axhspan(lo, hi, color="0.85")
        ax.axhline(n / n_bins, color="k", lw=0.8)
        ax.hist(ranks[:, j], bins=np.linspace(0, n_draws + 1, n_bins + 1), histtype="step", lw=1.5)
        ax.set(title=labels[j], xlabel="rank", yticks=[])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tarp(alphas, ecp, path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.plot(alphas, ecp, lw=2)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="credibility level $\\alpha$",
           ylabel="expected coverage", title="TARP")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def log_scaled(prior, labels):
    """Which parameters to show as log10: those with log-uniform priors."""
    return [prior.get(lab, {}).get("distribution") == "LogUniform" for lab in labels]


def plot_corner(samples, labels, path, truth=None, weights=None, title=None, log=None):
    """A corner plot of draws (n, D), with the truth marked when given; parameters
    flagged in ``log`` (D,) are shown as log10."""
    plt = _plt()
    d = samples.shape[1]
    if log is not None and any(log):
        log = np.asarray(log, bool)
        samples = samples.copy()
        samples[:, log] = np.log10(samples[:, log])
        if truth is not None:
            truth = np.array(truth, dtype=float)
            truth[log] = np.log10(truth[log])
        labels = [f"log10 {lab}" if lg else lab for lab, lg in zip(labels, log)]
    fig, axes = plt.subplots(d, d, figsize=(1.9 * d + 1, 1.9 * d + 1), squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(samples[:, i], bins=40, weights=weights, histtype="step", color="C0")
                ax.set_yticks([])
                if truth is not None:
                    ax.axvline(truth[i], color="C3")
            else:
                ax.hist2d(samples[:, j], samples[:, i], bins=40, weights=weights, cmap="Blues")
                if truth is not None:
                    ax.plot(truth[j], truth[i], "s", color="C3", ms=4)
            if i == d - 1:
                ax.set_xlabel(labels[j], fontsize=8)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i], fontsize=8)
            elif j > 0:
                ax.set_yticklabels([])
            ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
