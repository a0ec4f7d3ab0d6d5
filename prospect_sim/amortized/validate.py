"""``--validate``: calibration of a trained posterior on held-out simulations.

Uses the rows the checkpoint held out of training and validation (the last
``--n_test`` usable rows of its simulation file); with a different simulation
file of the same problem, every usable row is held out. Each simulation gets
noise from the checkpoint's noise model (a fixed generator), ``--validate_draws``
posterior draws, and the diagnostics of :mod:`.diagnostics`.

Writes beside the checkpoint ``<stem>.pt``:

- ``<stem>_validation.json``: coverage per level and parameter, its largest
  deviation, SBC rank histograms, TARP curve, counts, files used, and
  ``written_by`` (``--train`` or ``--validate``);
- ``<stem>_coverage.csv``: level, then one coverage column per parameter;
- ``<stem>_coverage.png``, ``_ranks.png``, ``_tarp.png``, ``_corner.png``.

Those are the names of the validation at the end of ``--train`` (made again
with the checkpoint). The ``--validate`` mode writes its own set,
``<stem>_validate.json``, ``<stem>_validate_coverage.csv``,
``<stem>_validate_coverage.png``, ``_validate_ranks.png``,
``_validate_tarp.png``, ``_validate_corner.png``, so it never replaces what
``--train`` wrote; and, as every mode, it refuses to replace its own set
from an earlier run without ``--overwrite`` (checked before any work).
"""

import json
import logging
import os

import numpy as np
import torch

from ..errors import InferenceError, UsageError
from . import diagnostics, options, spec
from ._paths import path_for
from .data import SimulationData
from .posterior import AmortizedPosterior, load_checkpoint, load_matching_checkpoint

__all__ = ["run", "validate", "report_paths"]

log = logging.getLogger(__name__)

_TEST_STREAM = 2 ** 31 - 3


#: The tag of the ``--validate`` mode's report names (:func:`report_paths`).
MODE_TAG = "validate"

_REPORTS = ("validation.json", "coverage.csv", "coverage.png", "ranks.png", "tarp.png",
            "corner.png")


def report_paths(checkpoint, tag=None):
    """Report files beside ``checkpoint``: ``{kind: path}``.

    ``tag`` None: the names of ``--train``'s validation (``<stem>_validation.json``,
    ``<stem>_coverage.png``, ...); a tag ``t``: ``<stem>_t.json``, ``<stem>_t_coverage.png``, ...

    >>> report_paths("run/x_flow.pt", "validate")["validation.json"]
    'run/x_flow_validate.json'
    >>> report_paths("run/x_flow.pt")["ranks.png"]
    'run/x_flow_ranks.png'
    """
    stem = os.path.splitext(checkpoint)[0]
    if tag is None:
        return {k: f"{stem}_{k}" for k in _REPORTS}
    return {k: f"{stem}_{tag}.json" if k == "validation.json" else f"{stem}_{tag}_{k}"
            for k in _REPORTS}


def run(ingredients, pool=None):
    """The ``--validate`` mode: returns the JSON report path."""
    rp = ingredients.run_params
    opts = {k: options.get(rp, k) for k in options.DEFAULTS}
    checkpoint, _ = load_matching_checkpoint(ingredients)
    return validate(checkpoint, path_for(rp, "sims"), opts, quiet=bool(rp.get("quiet")),
                    tag=MODE_TAG, overwrite=bool(rp.get("overwrite")))


def _check_replaceable(paths, overwrite):
    """UsageError, before any work, when a report exists and ``overwrite`` is off."""
    found = [p for p in paths.values() if os.path.exists(p)]
    if found and not overwrite:
        more = f" (and {len(found) - 1} more of its files)" if len(found) > 1 else ""
        raise UsageError(f"--validate: output {found[0]} already exists{more}, from an "
                         "earlier --validate of this checkpoint; pass --overwrite to "
                         "replace them")
    folder = os.path.dirname(os.path.abspath(paths["validation.json"]))
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--validate: cannot write in {folder}/ (beside the checkpoint); "
                         "make it writable or copy the checkpoint elsewhere")


def _held_out(data, ckpt, n):
    """(start, stop) of held-out rows in ``data``."""
    if data.identity == ckpt["simfile"]["identity"]:
        lo, hi = ckpt["simfile"]["split"]["test"]
        if hi <= lo:
            log.warning("the checkpoint held out no test rows; validating on its "
                        "validation rows (used for early stopping)")
            lo, hi = ckpt["simfile"]["split"]["val"]
        return lo, hi
    return 0, data.n_rows


def validate(checkpoint, simfile, opts, quiet=False, tag=None, overwrite=True):
    """Compute and write the calibration report; returns the JSON path.

    Parameters
    ----------
    checkpoint, simfile : str
    opts : dict
        ``n_validate``, ``validate_draws``, ``bfloat16``.
    tag : str, optional
        Names of the report files (:func:`report_paths`): None for ``--train``'s,
        :data:`MODE_TAG` for the ``--validate`` mode's.
    overwrite : bool
        False: a :class:`UsageError` before any work if one of them exists.
    """
    from tqdm.auto import tqdm
    opts = {**options.DEFAULTS, **opts}
    paths = report_paths(checkpoint, tag)
    _check_replaceable(paths, overwrite)
    ckpt = load_checkpoint(checkpoint, InferenceError)
    post = AmortizedPosterior.from_checkpoint(ckpt)
    n_draws, n_max = int(opts["validate_draws"]), int(opts["n_validate"])
    gemm_dtype = post.gemm_dtype(opts["bfloat16"])
    if n_draws < 10 or n_max < 1:
        raise UsageError(f"--validate_draws {n_draws} (at least 10) and --n_validate {n_max} "
                         "(at least 1)")
    seed = int(ckpt["options"].get("train_seed", 0))
    rng = np.random.default_rng([seed, _TEST_STREAM])
    gen = torch.Generator().manual_seed(seed)
    with SimulationData(simfile, val_fraction=0.1, n_test=0) as data:
        diff = spec.differences(ckpt["problem"], data.problem,
                                what=f"simulation file {simfile!r}")
        if diff:
            raise InferenceError("the simulation file does not match the checkpoint: "
                                 + "; ".join(diff))
        lo, hi = _held_out(data, ckpt, n_max)
        truths, ranks, samples_all = [], [], []
        first = None
        bar = tqdm(total=n_max, disable=quiet, unit="sim", desc="validate")
        for start in range(lo, hi, 512):
            theta, phot = data.read(start, min(start + 512, hi))
            left = n_max - sum(len(t) for t in truths)
            theta, phot = theta[:left], phot[:left]
            if not len(theta):
                break
            flux, unc, missing = post.noise.sample(phot, rng)
            cond = theta[:, post.condition_index] if post.conditions else None
            truth = theta[:, post.inferred_index]
            for s in range(0, len(truth), 128):
                sl = slice(s, s + 128)
                draws, _ = post.sample(flux[sl], unc[sl], missing[sl],
                                       None if cond is None else cond[sl], n_draws, gen,
                                       density=False, gemm_dtype=gemm_dtype)
                ranks.append(diagnostics.sbc_ranks(draws, truth[sl]))
                samples_all.append(draws[:, :: max(1, n_draws // 200)])  # thinned, for TARP
                if first is None:  # the corner plot shows the highest-S/N object of the batch
                    with np.errstate(divide="ignore", invalid="ignore"):
                        snr = np.where(missing[sl], 0, flux[sl] / np.where(missing[sl], 1, unc[sl]))
                    i = int(np.argmax(np.nansum(snr ** 2, axis=1)))
                    first = (draws[i], truth[sl][i], float(np.sqrt(np.nansum(snr[i] ** 2))))
            truths.append(truth)
            bar.update(len(truth))
        bar.close()
    if not truths:
        raise InferenceError(f"no held-out simulations in {simfile!r}; simulate more or train "
                             "with --n_test > 0")
    truth = np.concatenate(truths)
    ranks = np.concatenate(ranks)
    thinned = np.concatenate(samples_all)
    levels = diagnostics.LEVELS
    cov = diagnostics.coverage(ranks, n_draws, levels)
    bounds = np.array([ckpt["problem"]["prior"][t]["bounds"] for t in post.labels], dtype=float)
    alphas, ecp = diagnostics.tarp(thinned, truth, bounds[:, 0], bounds[:, 1],
                                   np.random.default_rng([seed, _TEST_STREAM, 1]))
    hist_edges = np.linspace(0, n_draws + 1, 21)
    report = {
        "checkpoint": os.path.abspath(checkpoint), "simfile": os.path.abspath(simfile),
        "written_by": "--validate" if tag else "--train",
        "rows": [int(lo), int(hi)], "n_objects": int(len(truth)), "n_draws": n_draws,
        "bfloat16": bool(opts["bfloat16"]),
        "param_labels": post.labels, "levels": levels.tolist(),
        "coverage": {lab: cov[:, j].tolist() for j, lab in enumerate(post.labels)},
        "max_coverage_error": {lab: float(np.max(np.abs(cov[:, j] - levels)))
                               for j, lab in enumerate(post.labels)},
        "sbc_rank_histograms": {lab: np.histogram(ranks[:, j], hist_edges)[0].tolist()
                                for j, lab in enumerate(post.labels)},
        "tarp": {"alpha": alphas.tolist(), "ecp": ecp.tolist(),
                 "max_error": float(np.max(np.abs(ecp - alphas)))},
    }
    _write_text(paths["validation.json"], json.dumps(report, indent=1))
    lines = ["level," + ",".join(post.labels)]
    lines += [f"{a:.2f}," + ",".join(f"{c:.4f}" for c in row) for a, row in zip(levels, cov)]
    _write_text(paths["coverage.csv"], "\n".join(lines) + "\n")
    diagnostics.plot_coverage(levels, cov, post.labels, paths["coverage.png"], len(truth))
    diagnostics.plot_ranks(ranks, n_draws, post.labels, paths["ranks.png"])
    diagnostics.plot_tarp(alphas, ecp, paths["tarp.png"])
    diagnostics.plot_corner(first[0], post.labels, paths["corner.png"], truth=first[1],
                            title=f"a held-out simulation (total S/N {first[2]:.0f})",
                            log=diagnostics.log_scaled(ckpt["problem"]["prior"], post.labels))
    log.info("coverage: largest deviation %s", report["max_coverage_error"])
    return paths["validation.json"]


def _write_text(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
