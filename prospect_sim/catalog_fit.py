"""Classical fits of every row of a catalogue: ``--nautilus|--dynesty|--emcee|--optimize --catalog FILE``.

The catalogue has the columns of ``--infer --catalog``
(:mod:`prospect_sim.amortized.catalog`: ``<filter>_flux`` and
``<filter>_unc`` in maggies for every filter of the parameter file's obs;
CSV, HDF5 or FITS) and optionally an id column (``--id_column``, else
the first of ``id``, ``objid``, ``ID``, ``OBJID`` present; else the row
number).  Each row is fitted on its own, with the parameter file's model
and the chosen sampler and its flags, as the obs of the parameter file
would be.  Objects are spread over the workers: under ``mpiexec -n N``
rank 0 hands out rows and writes, the other N - 1 ranks each fit one
object at a time; with ``--workers N``, N local processes; otherwise this
process.  A fit costs seconds to minutes, its result a few kilobytes, so
the writer is never the bottleneck and the rate grows with the workers.

Output ``BASE_<sampler>_catalog.h5`` (grows under ``.part``, renamed when
every row is done; ``--resume`` continues the ``.part`` after a kill,
skipping the finished rows), one row per catalogue row:

=================  ======================  =====================================
dataset            shape                   contents
=================  ======================  =====================================
``id``             (N,) str                the id column, or the row number
``draws``          (N, n_draws, D) f4      equal-weight draws (``--n_draws``),
                                           resampled from the weighted samples
``summary``        (N, P, 5) f8            weighted 2.5, 16, 50, 84, 97.5
                                           percentiles of the D parameters and
                                           the derived quantities (attrs ``names``)
``logz``           (N,)                    ln evidence (nested samplers; else NaN)
``ess``            (N,)                    effective sample size of the weights
``ncall``          (N,)                    likelihood calls
``seconds``        (N,)                    wall time of the fit
``n_bands``        (N,)                    bands fitted (finite flux, unc > 0)
``flags``          (N,) int                bits of :data:`FLAGS` (0: fine)
``done``           (N,) bool               row finished (fitted or flagged)
=================  ======================  =====================================

The derived quantities (:data:`prospect_sim.fit.DERIVED`) are ``mfrac``
(surviving / formed), ``total_mass`` (Msun formed) and ``stellar_mass``
(Msun surviving); parameters are in the model's units.  A row with a
non-numeric value or no usable band is flagged and skipped; a fit that
raises is flagged with its message logged; neither stops the run.
"""

import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import outputs
from . import pool as _pool
from .errors import FitError, ProspectSimError, UsageError
from .samplers import fit_kind

__all__ = ["run", "prepare", "add_arguments", "describe", "is_fit_table", "FLAGS", "QUANTILES",
           "weighted_quantiles", "row_obs"]

log = logging.getLogger(__name__)



def prepare(ingredients):
    """As for one fit (:func:`prospect_sim.fit.prepare`), on every process."""
    from . import fit
    fit.prepare(ingredients)

#: Flag bits of a row.
FLAGS = {1: "bad value (non-numeric flux or uncertainty): not fitted",
         2: "no usable band (no finite flux with a positive uncertainty): not fitted",
         4: "some bands missing: fitted on the others",
         8: "the fit failed (message in the log): no result"}
BAD_VALUE, NO_BANDS, MISSING_BANDS, FAILED = 1, 2, 4, 8

#: Percentiles of each summary row.
QUANTILES = (2.5, 16.0, 50.0, 84.0, 97.5)

_READ_ROWS = 1024          # catalogue rows read at a time


def add_arguments(parser):
    """``--id_column`` (``--catalog`` and ``--n_draws`` are the ``--infer`` flags)."""
    group = parser.add_argument_group("catalogue fits (--dynesty/--nautilus/--emcee/"
                                      "--optimize with --catalog FILE)")
    group.add_argument("--id_column", default=None, metavar="NAME",
                       help="catalogue column carried into the output as each row's id "
                            "(default: id or objid when present, else the row number)")


# --- one row ------------------------------------------------------------------

def row_obs(template, flux, unc):
    """The parameter file's obs with one catalogue row's photometry.

    Bands with a non-finite flux or uncertainty, or an uncertainty that is
    not positive, are masked (``phot_mask``) and set to 0 +- 1 so nothing
    non-finite reaches the likelihood.

    Returns
    -------
    obs : dict
    n_bands : int
        Bands kept.
    """
    from prospect.utils.obsutils import fix_obs
    flux, unc = np.asarray(flux, dtype=float), np.asarray(unc, dtype=float)
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(flux) & np.isfinite(unc) & (unc > 0)
    obs = {k: v for k, v in template.items()
           if k not in ("maggies", "maggies_unc", "phot_mask", "true_maggies", "true_theta")}
    obs.update(maggies=np.where(mask, flux, 0.0), maggies_unc=np.where(mask, unc, 1.0),
               phot_mask=mask)
    # fix_obs refuses an obs without data; such a row is flagged, never fitted
    return (fix_obs(obs) if mask.any() else obs), int(mask.sum())


def weighted_quantiles(values, weights, q):
    """Percentiles ``q`` (in %) of weighted samples, (len(q), ...) for values (n, ...).

    The weighted empirical CDF at each sorted sample is the weight below it
    plus half its own, interpolated linearly (equal weights: numpy's
    "hazen" percentiles).

    >>> weighted_quantiles(np.arange(4.0), np.ones(4), [50.0])
    array([1.5])
    """
    values = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float) / np.sum(weights)
    flat = values.reshape(len(values), -1)
    out = np.empty((len(q), flat.shape[1]))
    for j in range(flat.shape[1]):
        order = np.argsort(flat[:, j])
        cdf = np.cumsum(w[order]) - 0.5 * w[order]
        out[:, j] = np.interp(np.asarray(q) / 100.0, cdf, flat[order, j])
    return out.reshape((len(q),) + values.shape[1:])


def _fit_row(task):
    """Fit one catalogue row on this process's ingredients (a pool task): its result dict."""
    from . import fit
    index, flux, unc, bad = task
    ing = _pool.ingredients()
    rp = ing.run_params
    result = {"index": index, "flags": 0, "n_bands": 0}
    if bad:
        result["flags"] = BAD_VALUE
        return result
    obs, n_bands = row_obs(ing.obs, flux, unc)
    result["n_bands"] = n_bands
    if n_bands == 0:
        result["flags"] = NO_BANDS
        return result
    if n_bands < len(obs["phot_mask"]):
        result["flags"] |= MISSING_BANDS
    kind = fit_kind(rp)
    row = dataclasses.replace(ing, obs=obs)
    try:
        with _pool.substituted(row):
            res = fit.sample(row, kind, rp)
            derived = fit.derived_quantities(res["samples"], _pool.SerialPool())
    except (ProspectSimError, ValueError, ArithmeticError, RuntimeError) as err:
        result["flags"] |= FAILED
        result["error"] = f"{type(err).__name__}: {err}"
        return result
    samples = res["samples"]
    weights = np.exp(res["log_weights"])
    weights /= weights.sum()
    columns = np.column_stack([samples] + [derived[name] for name in fit.DERIVED])
    rng = np.random.default_rng([int(rp.get("seed", 0)), int(index)])
    n_draws = int(rp.get("n_draws") or 1000)
    result.update(
        draws=samples[rng.choice(len(samples), size=n_draws, p=weights)].astype(np.float32),
        summary=weighted_quantiles(columns, weights, QUANTILES).T,
        logz=res["logz"], ncall=res["ncall"], seconds=res["seconds"],
        ess=float(1.0 / np.sum(weights**2)))
    return result


# --- the output file ----------------------------------------------------------------

class FitTable:
    """The catalogue-fit output (module docstring), written row by row under ``.part``.

    Parameters
    ----------
    path : str
        Final path; the file grows at ``path + ".part"``.
    ids : list of str
        One per catalogue row.
    labels, derived : list of str
        Parameter labels (D) and derived quantities.
    meta : dict
        ``kind``, ``catalog``, ``n_draws``: a ``.part`` is continued only
        if they match.
    resume : bool
        Continue an existing ``.part`` (else start one).
    """

    def __init__(self, path, ids, labels, derived, meta, resume):
        import h5py
        self.path, self.part = str(path), str(path) + ".part"
        n, d, p = len(ids), len(labels), len(labels) + len(derived)
        expect = dict(meta, n_rows=n, parameters=json.dumps(list(labels)))
        if resume and os.path.exists(self.part):
            self.file = h5py.File(self.part, "a")
            got = {k: self.file.attrs.get(k) for k in expect}
            got = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in got.items()}
            if any(str(got[k]) != str(v) for k, v in expect.items()):
                self.file.close()
                raise FitError(f"--resume: {self.part} was made by another catalogue fit "
                               f"({got}); this one is {expect}: pass --overwrite to start again")
            log.info("resuming %s: %d of %d rows done", self.part,
                     int(self.file["done"][:].sum()), n)
            return
        self.file = h5py.File(self.part, "w")
        f = self.file
        f.attrs.update(expect)
        f.attrs["derived"] = json.dumps(list(derived))
        f.attrs["flags"] = json.dumps({str(k): v for k, v in FLAGS.items()})
        f.attrs["quantiles"] = np.asarray(QUANTILES)
        f.create_dataset("id", data=np.asarray(ids, dtype=object), dtype=h5py.string_dtype())
        n_draws = int(meta["n_draws"])
        f.create_dataset("draws", (n, n_draws, d), dtype="f4", fillvalue=np.nan,
                         chunks=(1, n_draws, d))
        summary = f.create_dataset("summary", (n, p, len(QUANTILES)), dtype="f8",
                                   fillvalue=np.nan, chunks=(min(n, 256), p, len(QUANTILES)))
        summary.attrs["names"] = json.dumps(list(labels) + list(derived))
        summary.attrs["percentiles"] = np.asarray(QUANTILES)
        for name, dtype in (("logz", "f8"), ("ess", "f8"), ("seconds", "f8"),
                            ("ncall", "i8"), ("n_bands", "i4"), ("flags", "i4")):
            f.create_dataset(name, (n,), dtype=dtype,
                             fillvalue=np.nan if dtype == "f8" else 0)
        f.create_dataset("done", (n,), dtype=bool, fillvalue=False)
        f.flush()

    @property
    def done(self):
        return self.file["done"][:]

    def write(self, result):
        """Store one row's result and flush (a kill loses at most the rows in flight)."""
        f, i = self.file, int(result["index"])
        f["flags"][i] = result["flags"]
        f["n_bands"][i] = result.get("n_bands", 0)
        if "draws" in result:
            f["draws"][i] = result["draws"]
            f["summary"][i] = result["summary"]
            for key in ("logz", "ess", "seconds", "ncall"):
                f[key][i] = result[key]
        f["done"][i] = True
        f.flush()

    def finish(self):
        """Close and rename the ``.part`` to the final path."""
        self.file.close()
        os.replace(self.part, self.path)

    def close(self):
        self.file.close()


def is_fit_table(path):
    """Whether ``path`` is an HDF5 file this module wrote (complete or ``.part``)."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            return "done" in f and "summary" in f and "kind" in f.attrs
    except OSError:
        return False


def describe(path):
    """A few lines on a catalogue-fit file (``python -m prospect_sim info FILE``)."""
    import h5py
    with h5py.File(path, "r") as f:
        done, flags = f["done"][:], f["flags"][:]
        names = json.loads(f["summary"].attrs["names"])
        median = f["summary"][:, :, QUANTILES.index(50.0)]
        seconds = f["seconds"][:]
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    fitted = done & np.all(np.isfinite(median), axis=1)
    lines = [f"{path}: --{attrs['kind']} fits of catalogue {attrs['catalog']}",
             f"  rows: {len(done)}, done {int(done.sum())}, fitted {int(fitted.sum())}"
             + ("" if done.all() else "  (incomplete: --resume continues it)"),
             f"  draws per object: {attrs['n_draws']}; columns of summary: {', '.join(names)}"]
    if fitted.any():
        lines.append(f"  fit time: median {np.nanmedian(seconds[fitted]):.2f} s per object")
        meds = np.nanmedian(median[fitted], axis=0)
        lines.append("  median of the posterior medians: "
                     + ", ".join(f"{n}={v:.4g}" for n, v in zip(names, meds)))
    for bit, meaning in FLAGS.items():
        n = int(np.sum(flags & bit > 0))
        if n:
            lines.append(f"  flag {bit}: {n} row{'s' if n > 1 else ''} ({meaning})")
    return "\n".join(lines)


# --- the mode -------------------------------------------------------------------------

def _open_catalog(path, filter_names, id_column):
    """The catalogue's photometry reader and its ids (list of str)."""
    from .amortized import catalog
    from .amortized.catalog import Catalog, columns_for
    with Catalog(path, []) as probe:
        available, n_rows = probe.available, probe.n_rows
    id_column = catalog.id_column(available, id_column, path)
    if id_column is None:
        ids = [str(i) for i in range(n_rows)]
    else:
        with Catalog(path, [id_column]) as idcat:
            ids = []
            for start in range(0, n_rows, _READ_ROWS):
                ids += idcat.read_text(start, min(start + _READ_ROWS, n_rows))[id_column]
    return Catalog(path, columns_for(filter_names)), ids


def _tasks(cat, filter_names, todo):
    """(index, flux, unc, bad) of every row in ``todo`` (sorted), read in blocks."""
    todo = np.asarray(todo)
    for start in range(0, cat.n_rows, _READ_ROWS):
        stop = min(start + _READ_ROWS, cat.n_rows)
        rows = todo[(todo >= start) & (todo < stop)]
        if not len(rows):
            continue
        values, bad = cat.read(start, stop)
        flux = np.column_stack([values[f"{f}_flux"] for f in filter_names])
        unc = np.column_stack([values[f"{f}_unc"] for f in filter_names])
        for i in rows:
            yield (int(i), flux[i - start], unc[i - start], bool(bad[i - start]))


def _progress(total, quiet, kind):
    if quiet or total == 0:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, unit="obj", desc=f"{kind} fits", file=sys.stderr,
                mininterval=1.0, smoothing=0.1, dynamic_ncols=True)


def run(ingredients, pool):
    """Fit every row of ``--catalog`` with the sampler asked for; the output's path."""
    from . import forward
    rp = ingredients.run_params
    kind = fit_kind(rp)
    path = outputs.path_for(rp, kind + "_catalog")
    outputs.check_writable(path, rp, resumable=True)
    part = path + ".part"
    if os.path.exists(part) and not (rp.get("resume") or rp.get("overwrite")):
        raise FitError(f"found {part} from an interrupted catalogue fit; pass --resume to "
                       f"continue it or --overwrite to start again")
    if rp.get("resume") and os.path.exists(path) and not os.path.exists(part):
        log.info("%s is complete and there is nothing to resume", path)
        return path
    names = forward.filter_names(ingredients.obs)
    cat, ids = _open_catalog(rp["catalog"], names, rp.get("id_column"))
    if not ids:
        cat.close()
        raise UsageError(f"--catalog {rp['catalog']} has no rows to fit")
    n_draws = int(rp.get("n_draws") or 1000)
    if n_draws < 1:
        raise UsageError(f"--n_draws must be at least 1, got {n_draws}")
    from .fit import DERIVED
    meta = {"kind": kind, "catalog": Path(rp["catalog"]).name, "n_draws": n_draws}
    table = FitTable(path, ids, list(ingredients.model.theta_labels()), DERIVED, meta,
                     resume=bool(rp.get("resume")))
    todo = np.flatnonzero(~table.done)
    log.info("%s fits of %d catalogue rows (%d to do) on %d worker%s", kind, len(ids),
             len(todo), pool.size, "" if pool.size == 1 else "s")
    bar = _progress(len(todo), rp.get("quiet"), kind)
    counts, t0 = dict.fromkeys(FLAGS, 0), time.time()
    try:
        for result in pool.imap_unordered(_fit_row, _tasks(cat, names, todo)):
            table.write(result)
            for bit in FLAGS:
                counts[bit] += bool(result["flags"] & bit)
            if "error" in result:
                log.warning("row %d (id %s): %s", result["index"], ids[result["index"]],
                            result["error"])
            if bar is not None:
                bar.update(1)
    except BaseException:
        table.close()             # the .part keeps every finished row for --resume
        raise
    finally:
        if bar is not None:
            bar.close()
        cat.close()
    table.finish()
    elapsed = time.time() - t0
    rate = len(todo) / elapsed * 3600 if elapsed > 0 else float("nan")
    log.info("fitted %d rows in %.1f s (%.0f objects/hour on %d worker%s)", len(todo),
             elapsed, rate, pool.size, "" if pool.size == 1 else "s")
    for bit, n in counts.items():
        if n:
            log.warning("%d row%s flagged %d: %s", n, "" if n == 1 else "s", bit, FLAGS[bit])
    return path
