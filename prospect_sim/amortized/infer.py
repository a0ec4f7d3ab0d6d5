"""``--infer``: posterior samples for the obs, or for every row of a catalogue.

Output HDF5 (``outputs.path_for(run_params, "posterior")``):

=====================  ===================  ==========================================
``/samples``           (N, n_draws, D) f4   flow draws (absent with ``--summary_only``)
``/median``            (N, D) f4            posterior medians (importance-weighted
``/p16``, ``/p84``     (N, D) f4            with ``--importance``)
``/flags``             (N,) u1              bit flags, see :data:`FLAGS`
``/ess``               (N,) f4              importance-sampling ESS (``--importance``)
``/log_weights``       (N, n_draws) f4      importance log weights (``--importance``)
``/batches_done``      (K,) bool            batches written (for ``--resume``)
attrs                                        ``param_labels``, ``checkpoint``, ``source``,
                                             ``n_draws``, ``seed``, ``flags`` (JSON) ...
=====================  ===================  ==========================================

Objects are read, sampled and written ``--infer_batch`` rows at a time, so a
catalogue never sits in memory; the file grows under ``<output>.part`` and is
renamed when complete. ``--resume`` continues a ``.part`` file from its first
batch not done; without ``--resume`` or ``--overwrite`` one is refused, never
discarded. Batch ``k`` draws with a generator seeded by ``[seed, k]``,
so a resumed run writes the same numbers as an uninterrupted one.
"""

import contextlib
import errno
import json
import logging
import os
import re

import h5py
import numpy as np
import torch

from ..errors import InferenceError, UsageError
from ..interrupt import interruptible
from ..outputs import write_failed
from . import options, spec
from ._paths import check_writable, path_for
from .catalog import Catalog, columns_for
from .posterior import AmortizedPosterior, load_checkpoint

__all__ = ["run", "infer", "FLAGS", "ObsSource", "CatalogSource"]

log = logging.getLogger(__name__)

#: Bit flags of ``/flags``.
FLAGS = {"bad_value": 1, "no_bands": 2, "no_condition": 4, "low_ess": 8}
_UNUSABLE = FLAGS["bad_value"] | FLAGS["no_bands"] | FLAGS["no_condition"]


def _missing_and_flags(flux, unc, cond, bad):
    missing = ~(np.isfinite(flux) & np.isfinite(unc) & (unc > 0))
    flags = np.where(bad, FLAGS["bad_value"], 0)
    flags |= np.where(missing.all(1), FLAGS["no_bands"], 0)
    if cond is not None and cond.shape[1]:
        flags |= np.where(~np.isfinite(cond).all(1), FLAGS["no_condition"], 0)
    return missing, flags.astype(np.uint8)


class ObsSource:
    """The parameter file's obs as a one-row source."""

    def __init__(self, obs, conditions, run_params):
        self.name = "obs"
        self.n_rows = 1
        self.flux = np.atleast_2d(np.asarray(obs.get("maggies"), dtype=float))
        self.unc = np.atleast_2d(np.asarray(obs.get("maggies_unc"), dtype=float))
        mask = obs.get("phot_mask")
        if mask is not None:
            keep = np.atleast_2d(np.asarray(mask, dtype=bool))
            self.flux = np.where(keep, self.flux, np.nan)
        cond = []
        for c in conditions:
            value = obs.get(c, run_params.get(c))
            if value is None:
                raise InferenceError(f"--condition {c}: the obs has no value for it; put "
                                     f"obs[{c!r}] in build_obs or pass --{c}")
            cond.append(float(np.ravel(value)[0]))
        self.cond = np.array([cond], dtype=float) if conditions else None

    def read(self, start, stop):
        missing, flags = _missing_and_flags(self.flux, self.unc, self.cond, np.zeros(1, bool))
        return self.flux, self.unc, missing, self.cond, flags

    def close(self):
        pass


class CatalogSource:
    """Rows of a catalogue file (:mod:`.catalog`)."""

    def __init__(self, path, filter_names, conditions):
        self.name = os.path.abspath(path)
        self.filters, self.conditions = list(filter_names), list(conditions)
        self.cat = Catalog(path, columns_for(self.filters, self.conditions))
        self.n_rows = self.cat.n_rows

    def read(self, start, stop):
        v, bad = self.cat.read(start, stop)
        flux = np.stack([v[f"{f}_flux"] for f in self.filters], axis=1)
        unc = np.stack([v[f"{f}_unc"] for f in self.filters], axis=1)
        cond = (np.stack([v[c] for c in self.conditions], axis=1) if self.conditions else None)
        missing, flags = _missing_and_flags(flux, unc, cond, bad)
        return flux, unc, missing, cond, flags

    def close(self):
        self.cat.close()


def load_matching_checkpoint(ingredients):
    """``(path, checkpoint)`` named by the run, refused if trained for another param file."""
    checkpoint = path_for(ingredients.run_params, "flow")
    ckpt = load_checkpoint(checkpoint, InferenceError)
    diff = spec.differences(spec.model_problem(ingredients.model, ingredients.obs),
                            ckpt["problem"], what=f"checkpoint {checkpoint!r}")
    if diff:
        raise InferenceError("the checkpoint was trained for another param file: "
                             + "; ".join(diff) + ". Train this param file (--train) or name "
                             "its checkpoint with --checkpoint")
    return checkpoint, ckpt


def run(ingredients, pool=None):
    """The ``--infer`` mode: returns the posterior file path written."""
    rp = ingredients.run_params
    opts = {k: options.get(rp, k) for k in options.DEFAULTS}
    checkpoint, ckpt = load_matching_checkpoint(ingredients)
    want = list(opts["condition"] or [])
    if want and want != list(ckpt["conditions"]):
        raise UsageError(f"--condition {want}: the checkpoint was trained with conditions "
                         f"{ckpt['conditions']}; drop the flag or train again")
    names = ckpt["problem"]["filter_names"]
    if opts["catalog"]:
        source = CatalogSource(opts["catalog"], names, ckpt["conditions"])
    else:
        source = ObsSource(ingredients.obs, ckpt["conditions"], rp)
    reweighter = None
    if opts["importance"]:
        from .importance import Reweighter
        reweighter = Reweighter(ingredients.model, ingredients.sps, ingredients.obs,
                                ckpt["problem"], noise=ingredients.noise)
    out = path_for(rp, "posterior")
    try:
        return infer(ckpt, checkpoint, source, out, opts, reweighter=reweighter,
                     resume=bool(rp.get("resume")), overwrite=bool(rp.get("overwrite")),
                     quiet=bool(rp.get("quiet")))
    finally:
        source.close()


def _open_output(part, post, n_rows, opts, checkpoint, source_name, n_batches, resume, importance):
    attrs = {"checkpoint": os.path.abspath(checkpoint), "source": source_name,
             "n_objects": n_rows, "n_draws": int(opts["n_draws"]),
             "seed": int(opts["infer_seed"]), "batch_rows": int(opts["infer_batch"]),
             "importance": bool(importance), "summary_only": bool(opts["summary_only"])}
    if float(opts["proposal_scale"]) != 1.0:
        attrs["proposal_scale"] = float(opts["proposal_scale"])
    if opts["bfloat16"]:
        attrs["bfloat16"] = True  # the flow's matrix products in bfloat16 (--bfloat16)
    if resume and os.path.exists(part):
        try:
            h5 = h5py.File(part, "a")
        except OSError as err:
            cause = " ".join(str(err).split())
            raise UsageError(f"--resume: cannot reopen {part} ({cause}); it is damaged or "
                             "unwritable: free space, or use --overwrite to start "
                             "again") from err
        differ = [k for k, v in attrs.items() if h5.attrs.get(k) != v]
        if differ:
            h5.close()
            raise UsageError(f"--resume: {part!r} was started with different {', '.join(differ)}; "
                             "use --overwrite to start again")
        return h5
    h5 = h5py.File(part, "w")
    d, n = len(post.labels), int(opts["n_draws"])
    rows = max(1, min(int(opts["infer_batch"]), n_rows))
    if not opts["summary_only"]:
        h5.create_dataset("samples", (n_rows, n, d), dtype="f4", chunks=(min(rows, 64), n, d),
                          fillvalue=np.nan)
    for name in ("median", "p16", "p84"):
        h5.create_dataset(name, (n_rows, d), dtype="f4", fillvalue=np.nan)
    h5.create_dataset("flags", (n_rows,), dtype="u1")
    if importance:
        h5.create_dataset("ess", (n_rows,), dtype="f4", fillvalue=np.nan)
        h5.create_dataset("log_weights", (n_rows, n), dtype="f4", chunks=(min(rows, 256), n),
                          fillvalue=np.nan)
    h5.create_dataset("batches_done", (n_batches,), dtype=bool)
    h5.attrs.update(attrs)
    h5.attrs["param_labels"] = np.array(post.labels, dtype="S")
    h5.attrs["conditions"] = np.array(post.conditions, dtype="S")
    h5.attrs["filter_names"] = np.array(post.problem["filter_names"], dtype="S")
    h5.attrs["flags"] = json.dumps(FLAGS)
    h5.attrs["prior"] = json.dumps(post.problem["prior"])
    return h5


def _generator(seed, k):
    state = np.random.SeedSequence([seed, k]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def infer(ckpt, checkpoint, source, out, opts, reweighter=None, resume=False, overwrite=False,
          quiet=False):
    """Posterior samples for every row of ``source``, written to ``out``.

    Parameters
    ----------
    ckpt : dict
        The checkpoint (:func:`~prospect_sim.amortized.posterior.load_checkpoint`).
    checkpoint : str
        Its path (recorded in the output).
    source : ObsSource or CatalogSource
    out : str
    opts : dict
        Options (``n_draws``, ``infer_batch``, ``infer_seed``, ``summary_only``, ``min_ess``,
        ``device``, ``compile``, ``bfloat16``, ``proposal_scale``).
    reweighter : prospect_sim.amortized.importance.Reweighter, optional

    Returns
    -------
    str
        ``out``.
    """
    from tqdm.auto import tqdm

    from .train import resolve_device
    opts = {**options.DEFAULTS, **opts}
    if os.path.exists(out) and resume and not overwrite:
        return out  # already complete
    check_writable(out, {"resume": resume, "overwrite": overwrite}, "posterior file")
    if opts["n_draws"] < 1 or opts["infer_batch"] < 1:
        raise UsageError(f"--n_draws {opts['n_draws']} and --infer_batch {opts['infer_batch']} "
                         "must be positive")
    if float(opts["proposal_scale"]) != 1.0 and (reweighter is None
                                                 or float(opts["proposal_scale"]) < 1.0):
        raise UsageError(f"--proposal_scale {opts['proposal_scale']}: a wider proposal is for "
                         "--importance only, and must be >= 1 (its draws need the weights)")
    if opts["bfloat16"] and reweighter is not None:
        raise UsageError("--bfloat16 cannot be used with --importance: the weights need the "
                         "density of the draws, which bfloat16 products do not give exactly")
    part = out + ".part"
    if os.path.exists(part) and not (resume or overwrite):
        raise UsageError(f"found {part} from an interrupted --infer run; pass --resume to "
                         "continue it or --overwrite to start again")
    if source.n_rows < 1:
        raise InferenceError(f"{source.name} has no rows (a header only?); expected one "
                             "object per row")
    post = AmortizedPosterior.from_checkpoint(ckpt, device=resolve_device(opts["device"]))
    gemm_dtype = post.gemm_dtype(opts["bfloat16"])
    n_rows, rows = source.n_rows, int(opts["infer_batch"])
    if opts["compile"]:
        post.compile_sampling(rows)
    n_batches = max(1, -(-n_rows // rows))
    try:
        h5 = _open_output(part, post, n_rows, opts, checkpoint, source.name, n_batches,
                          resume, reweighter is not None)
    except OSError as err:  # full disk, quota, read-only: nothing written worth keeping
        with contextlib.suppress(OSError):
            if not (resume and os.path.exists(part)):
                os.remove(part)
        raise write_failed(part, err, InferenceError, "posterior file") from err
    failed = None
    # One handle per dataset held open for the run: HDF5 then writes their chunk caches
    # in h5.flush(), which raises on a full disk. Without them each h5[name] is closed
    # at once, and a failed write there is only printed (h5py ignores errors in
    # __dealloc__): the batch is marked done with its data lost.
    held = [h5[name] for name in h5]
    row_bytes = sum(d.dtype.itemsize * int(np.prod(d.shape[1:])) for d in held
                    if d.shape[:1] == (n_rows,))
    try:
        done = h5["batches_done"][:]
        bar = tqdm(total=n_rows, initial=int(min(done.sum() * rows, n_rows)), disable=quiet,
                   unit="obj", desc="infer")
        with interruptible() as check_interrupt:
            for k in np.flatnonzero(~done):
                start, stop = k * rows, min((k + 1) * rows, n_rows)
                _check_space(part, (stop - start + 64) * row_bytes + 2 ** 20)
                _infer_batch(h5, post, source, start, stop, opts, reweighter,
                             _generator(int(opts["infer_seed"]), int(k)), gemm_dtype)
                _flush(h5)   # the batch's data on disk (or OSError) before it is marked done
                h5["batches_done"][k] = True
                _flush(h5)
                bar.update(stop - start)
                check_interrupt()  # a Ctrl-C swallowed by a finaliser stops us here
        bar.close()
        n_flag = int(np.count_nonzero(h5["flags"][:] & _UNUSABLE))
        if n_flag:
            log.warning("%d of %d objects could not be used (flags in %s)", n_flag, n_rows, out)
    except OSError as err:  # a failed write (full disk, quota): stop here, close cleanly
        failed = err
    finally:
        del held
        try:
            h5.close()
        except OSError as err:  # its last flush failed too; the batches marked done stay
            failed = failed or err
    if failed is not None:
        raise _write_stopped(part, failed) from failed
    try:
        os.replace(part, out)
    except OSError as err:
        raise write_failed(out, err, InferenceError, "posterior file") from err
    return out


def _check_space(path, need):
    """``OSError`` ENOSPC when the disk of ``path`` has less than ``need`` bytes free.

    Checked before each batch: HDF5 cannot close a file cleanly once one of its
    writes has failed (its errors are only printed, and the process may crash at
    exit), so a disk that the output itself fills is stopped before the write.
    """
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except (AttributeError, OSError):  # no statvfs (Windows): the writes are guarded
        return
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise OSError(errno.ENOSPC, f"No space left on device ({free / 2 ** 20:.1f} MiB "
                                    f"free, the next batch needs {need / 2 ** 20:.1f} MiB)")


def _flush(h5):
    """``h5.flush()``; a failed write (h5py raises ``RuntimeError`` there) as ``OSError``
    with the system's errno and message (e.g. ENOSPC, "No space left on device")."""
    try:
        h5.flush()
    except RuntimeError as err:
        found = re.search(r"errno = (\d+), error message = '([^']*)'", str(err))
        if found is None:
            raise OSError(" ".join(str(err).split())) from err
        raise OSError(int(found.group(1)), found.group(2)) from err


def _write_stopped(part, err):
    """The one-line error of a batch write that failed: the finished batches are kept."""
    return write_failed(part, err, InferenceError, "posterior file",
                        "the batches finished before are kept: free space and run again "
                        "with --resume to continue")


def _infer_batch(h5, post, source, start, stop, opts, reweighter, gen, gemm_dtype=None):
    try:
        flux, unc, missing, cond, flags = source.read(start, stop)
    except OSError as err:  # not a write failure: say so
        raise InferenceError(f"cannot read rows {start}-{stop} of {source.name}: "
                             f"{' '.join(str(err).split())}") from err
    good = (flags & _UNUSABLE) == 0
    n, d = int(opts["n_draws"]), len(post.labels)
    samples = np.full((stop - start, n, d), np.nan, dtype=np.float32)  # written as f4
    quant = np.full((3, stop - start, d), np.nan, dtype=np.float32)
    if good.any():
        f, u, m = np.nan_to_num(flux[good]), np.nan_to_num(unc[good]), missing[good]
        c = cond[good] if cond is not None else None
        # infer() admits a proposal_scale other than 1 only with a reweighter
        theta, log_q = post.sample(f, u, m, c, n, generator=gen,
                                   scale=float(opts["proposal_scale"]),
                                   density=reweighter is not None, gemm_dtype=gemm_dtype)
        samples[good] = theta
        if reweighter is not None:
            full = np.empty(theta.shape[:2] + (len(post.problem["theta_labels"]),))
            full[..., post.inferred_index] = theta
            if c is not None:
                full[..., post.condition_index] = c[:, None, :]
            from .importance import ess, weighted_quantiles
            log_w = reweighter.log_weights(full, log_q, f, u, m)
            e = ess(log_w)
            quant[:, good] = weighted_quantiles(theta, log_w, [0.16, 0.5, 0.84])
            lw = np.full((stop - start, n), np.nan)
            lw[good] = log_w
            es = np.full(stop - start, np.nan)
            es[good] = e
            h5["log_weights"][start:stop] = lw
            h5["ess"][start:stop] = es
            low = np.zeros(stop - start, bool)
            low[good] = e < float(opts["min_ess"])
            flags = flags | np.where(low, FLAGS["low_ess"], 0).astype(np.uint8)
        else:  # percentiles of the float32 draws that are written
            quant[:, good] = np.quantile(samples[good], [0.16, 0.5, 0.84], axis=1)
    if "samples" in h5:
        h5["samples"][start:stop] = samples
    h5["p16"][start:stop] = quant[0]
    h5["median"][start:stop] = quant[1]
    h5["p84"][start:stop] = quant[2]
    h5["flags"][start:stop] = flags
