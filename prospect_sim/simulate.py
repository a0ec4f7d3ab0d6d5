"""``--simulate``: prior draws -> chunks -> workers -> one HDF5 file.

The run is split into chunks of ``--chunk_size`` rows. Chunk ``k`` draws its
unit-cube points from ``numpy.random.default_rng([seed, k])`` (plain uniform,
or a scrambled Sobol / Latin-hypercube design seeded the same way), maps them
through the prior (:func:`prospect_sim.forward.prior_transform`) and predicts
photometry (:func:`prospect_sim.forward.predict_batch`). So the content of
chunk ``k`` depends only on the model, the seed, the chunk size and the
design, never on how many workers computed it or in which order.

The master hands out chunk ids (``pool.imap_unordered``); each worker
computes with the ingredients it built itself; the master is the only writer
(:class:`prospect_sim.store.SimulationStore`): it writes each chunk at its
rows, flushes, and then marks the chunk done. Memory is constant in
``n_samples``. ``--resume`` computes only the chunks that are not done, and
with a larger ``--n_samples`` extends a finished file to what a run at that
size would have made.

This module imports nothing heavy at import time, so that the command line
can add its flags (:func:`add_arguments`) cheaply.
"""

import datetime
import hashlib
import json
import logging
import os
import sys
import time

__all__ = ["add_arguments", "run", "n_tasks", "draw_unit", "DESIGNS", "DEFAULT_CHUNK_SIZE"]

log = logging.getLogger(__name__)

#: Unit-cube designs of ``--design``.
DESIGNS = ("random", "sobol", "lhs")
#: Rows per chunk unless ``--chunk_size`` says otherwise (a power of 2 suits Sobol).
#: Larger chunks read the sps's tables once for more objects: with two
#: workers sharing the cores' caches, 16,384 ran 5-10% faster than 8,192
#: and as fast as 32,768 (paired A/B, two processes at once).
DEFAULT_CHUNK_SIZE = 16384
#: Paths of ``--forward``.
FORWARD_PATHS = ("auto", "fast", "reference")


def add_arguments(parser):
    """Add the flags of ``--simulate`` (``--n_samples``, ``--seed``,
    ``--resume``, ``--simfile`` are the command line's own)."""
    group = parser.add_argument_group("--simulate options")
    group.add_argument("--chunk_size", type=int, default=None,
                       help="rows per chunk: the unit of work, of checkpointing and of "
                            "the random streams (changing it changes the draws); "
                            f"default {DEFAULT_CHUNK_SIZE:,}, or the file's own with "
                            "--resume")
    group.add_argument("--design", choices=DESIGNS, default="random",
                       help="unit-cube design per chunk: iid uniform, or scrambled "
                            "Sobol / Latin hypercube (scipy.stats.qmc)")
    group.add_argument("--forward", choices=FORWARD_PATHS, default="auto",
                       help="photometry path: the sps's batched kernel ('fast'), "
                            "model.predict per object ('reference'), or fast when "
                            "the sps has one ('auto')")


# ----------------------------------------------------------------------
# unit-cube draws
def draw_unit(design, seed, k, chunk_size, rows, ndim):
    """Unit-cube points of chunk ``k``.

    Parameters
    ----------
    design : {"random", "sobol", "lhs"}
    seed, k : int
        The generator is ``numpy.random.default_rng([seed, k])``.
    chunk_size : int
        Rows of a full chunk (a partial last chunk gets the first ``rows``
        points of the full chunk, so extending a file reproduces them).
    rows, ndim : int

    Returns
    -------
    u : ndarray (rows, ndim), values in [0, 1)

    >>> u = draw_unit("random", 1, 0, 4, 4, 2)
    >>> bool((draw_unit("random", 1, 0, 4, 2, 2) == u[:2]).all())
    True
    """
    import numpy as np
    rng = np.random.default_rng([int(seed), int(k)])
    if design == "random":
        return rng.random((rows, ndim))
    import warnings
    from scipy.stats import qmc
    if design == "sobol":
        engine = qmc.Sobol(ndim, scramble=True, rng=rng)
        with warnings.catch_warnings():        # balance needs 2**m points; chunks may not be
            warnings.simplefilter("ignore", UserWarning)
            return engine.random(rows)
    if design == "lhs":
        return qmc.LatinHypercube(ndim, rng=rng).random(chunk_size)[:rows]
    raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")


# ----------------------------------------------------------------------
# every process, once, right after building its ingredients
_WARM_ROWS = 1024


def prepare(ingredients):
    """Fill the sps's batched-photometry tables before any chunk is computed.

    GridSPS builds its lattice, outlier and per-redshift-group tables on
    first use, for the redshifts and metallicities it sees (under a second
    in all).  Called on every process as it builds its ingredients, so under
    ``--workers`` the master does it once before the workers are forked and
    they inherit the tables; under MPI each rank does it at start-up instead
    of in its first chunks.  The batch, 1,024 prior draws and the prior's
    upper corner (u = 0.999), reaches the largest redshift the prior gives
    and nearly every (redshift group, metallicity) pair.  A failure here is
    left to the run to report, with its chunk.
    """
    import numpy as np
    from . import forward
    ing = ingredients
    if (not forward.has_fast_path(ing.sps) or not ing.obs.get("filters")
            or ing.run_params.get("forward") == "reference"):
        return
    model = ing.model
    u = np.vstack([draw_unit("random", 0, 0, _WARM_ROWS, _WARM_ROWS, model.ndim),
                   np.full((1, model.ndim), 0.999)])
    try:
        forward.predict_batch(model, ing.sps, ing.obs, forward.prior_transform(model, u))
    except Exception as err:  # noqa: BLE001 - the run reports it, with context
        log.debug("warming up the sps failed (%s); the first chunk will say why", err)


# ----------------------------------------------------------------------
# the worker's task
def _simulate_chunk(task):
    """Compute one chunk with this process's ingredients (module level: pickled by name)."""
    import numpy as np
    from . import forward, pool
    k, rows, seed, chunk_size, design, path = task
    ing = pool.ingredients()
    model = ing.model
    u = draw_unit(design, seed, k, chunk_size, rows, model.ndim)
    theta = forward.prior_transform(model, u)
    phot, extras = forward.predict_batch(model, ing.sps, ing.obs, theta, path=path)
    valid = np.isfinite(theta).all(axis=1) & np.isfinite(phot).all(axis=1)
    return k, theta, phot, extras, valid


# ----------------------------------------------------------------------
# run
class _Settings:
    """The run's settings from run_params, checked."""

    def __init__(self, run_params):
        from .errors import UsageError
        self.n_samples = _positive_int(run_params.get("n_samples"), "--n_samples")
        chunk_size = run_params.get("chunk_size")
        self.chunk_size = (None if chunk_size is None               # resolved by run()
                           else _positive_int(chunk_size, "--chunk_size"))
        seed = run_params.get("seed")
        seed = 0 if seed is None else seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UsageError(f"--seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        self.design = run_params.get("design") or "random"
        if self.design not in DESIGNS:
            raise UsageError(f"--design must be one of {', '.join(DESIGNS)}, got {self.design!r}")
        self.forward = run_params.get("forward") or "auto"
        if self.forward not in FORWARD_PATHS:
            raise UsageError(f"--forward must be one of {', '.join(FORWARD_PATHS)}, "
                             f"got {self.forward!r}")
        self.resume = bool(run_params.get("resume"))
        self.overwrite = bool(run_params.get("overwrite"))
        self.quiet = bool(run_params.get("quiet"))
        if self.resume and self.overwrite:
            raise UsageError("--overwrite and --resume were both given; choose one")


def _positive_int(value, flag):
    from .errors import UsageError
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{flag} must be a positive integer, got {value!r}") from None
        if not as_float.is_integer():
            raise UsageError(f"{flag} must be a positive integer, got {value!r}")
        value = int(as_float)
    if value <= 0:
        raise UsageError(f"{flag} must be a positive integer, got {value}")
    return value


def n_tasks(run_params):
    """Chunks of the run at most (for ``--workers``), or None when the file decides.

    >>> n_tasks({"n_samples": 40000, "chunk_size": 16384})
    3
    """
    try:
        n = int(run_params.get("n_samples") or 0)
        size = run_params.get("chunk_size")
    except (TypeError, ValueError):
        return None
    if n <= 0 or (size is None and run_params.get("resume")):
        return None          # --resume keeps the file's own chunk size
    size = int(size or DEFAULT_CHUNK_SIZE)
    return -(-n // size) if size > 0 else None


def run(ingredients, pool):
    """Simulate ``--n_samples`` prior draws into the simulation file.

    Parameters
    ----------
    ingredients : prospect_sim.paramfile.Ingredients
        This (master) process's obs, model, sps and run_params.
    pool : pool from :func:`prospect_sim.pool.open_pool`
        Its ``imap_unordered`` computes the chunks.

    Returns
    -------
    str
        The path of the simulation file.

    Raises
    ------
    UsageError
        Bad flags, or an existing file without ``--resume``/``--overwrite``.
    StoreError
        A file that cannot be written, or does not match on ``--resume``.
    WorkerError
        A chunk failed or a worker died; the completed chunks are kept.
    """
    from . import forward, outputs
    from .errors import SimulationError, UsageError, WorkerError
    from .interrupt import interruptible

    run_params = ingredients.run_params
    settings = _Settings(run_params)
    path = outputs.path_for(run_params, "sims")
    if settings.chunk_size is None:
        settings.chunk_size = _default_chunk_size(path, settings)
    sps, obs = ingredients.sps, ingredients.obs
    if obs.get("filters") is None or len(obs["filters"]) == 0:
        raise SimulationError(f"{ingredients.paramfile.name}: build_obs returned no "
                              "filters; --simulate predicts photometry in obs['filters']")
    fast = forward.has_fast_path(sps)
    if settings.forward == "fast" and not fast:
        raise UsageError(f"--forward fast needs an sps with batched kernels "
                         f"(sps.photometry); {type(sps).__name__} has none; use "
                         "--forward reference or auto")
    path_used = "fast" if (settings.forward == "fast"
                           or (settings.forward == "auto" and fast)) else "reference"
    identity = _identity(ingredients, settings, path_used)

    store, earlier_invalid = _open_store(path, settings, identity, ingredients, path_used)
    with store:
        missing = store.missing_chunks()
        todo_rows = sum(_rows(store, k) for k in missing)
        if not missing:
            log.info("%s already holds all %d rows; nothing to compute", path,
                     store.n_samples)
        invalid, done_rows, t0 = 0, 0, time.perf_counter()
        tasks = ((k, _rows(store, k), settings.seed, settings.chunk_size,
                  settings.design, path_used) for k in missing)
        bar = _progress(todo_rows, settings.quiet)
        try:
            with interruptible() as check_interrupt:
                for k, theta, phot, extras, valid in pool.imap_unordered(_simulate_chunk, tasks):
                    store.write_chunk(k, theta, phot, extras, valid)
                    invalid += int(valid.size - valid.sum())
                    done_rows += valid.size
                    bar.update(valid.size)
                    check_interrupt()  # a Ctrl-C swallowed by a finaliser stops us here
        except KeyboardInterrupt:
            bar.close()
            log.warning("interrupted: %d chunks of %s are complete and kept; rerun with "
                        "--resume to finish", int(store.chunks_done.sum()), path)
            raise
        except WorkerError:
            bar.close()
            log.warning("%d chunks of %s are complete and kept; once the cause below is "
                        "fixed, rerun with --resume to finish", int(store.chunks_done.sum()),
                        path)
            raise
        finally:
            bar.close()
        elapsed = time.perf_counter() - t0
        if missing:
            store.set_attrs(finished=_now())
        total_invalid = earlier_invalid + invalid
        _summary(store, path, path_used, sps, pool, done_rows, elapsed, total_invalid)
    return path


def _default_chunk_size(path, settings):
    """``--chunk_size`` when not given: the file's own on ``--resume``, else the default.

    So a file made with another default (earlier versions used 8,192) resumes as
    it was made.
    """
    from .store import SimulationStore
    if settings.resume and os.path.exists(path):
        try:
            with SimulationStore(path, "r") as store:
                return store.chunk_size
        except Exception:  # noqa: BLE001 - _open_store reports what is wrong with the file
            pass
    return DEFAULT_CHUNK_SIZE


def _rows(store, k):
    rows = store.chunk_rows(k)
    return rows.stop - rows.start


def _open_store(path, settings, identity, ingredients, path_used):
    """The store to write: new, replaced, or resumed (checked against ``identity``)."""
    from . import forward
    from .errors import UsageError
    from .store import SimulationStore

    exists = os.path.exists(path)
    if exists and settings.resume:
        store = SimulationStore(path, "r+")
        try:
            _check_identity(store, identity, path)
            if settings.n_samples < store.n_samples:
                raise UsageError(f"{path} holds n_samples={store.n_samples}; --resume "
                                 f"with --n_samples {settings.n_samples} would shrink it; "
                                 f"pass --n_samples {store.n_samples} or more")
            report = store.verify(repair=True)
            store.grow(settings.n_samples)
            if store.text_attr("fixed_config") is None:   # made before it was recorded
                store.set_attrs(fixed_config=_fixed_config(ingredients))
            if store.missing_chunks():
                store.set_attrs(last_resumed=_now(), finished="")
            log.info("resuming %s: %d of %d chunks done", path, report["chunks_done"],
                     store.n_chunks)
        except BaseException:
            store.close()
            raise
        return store, report["invalid"]
    if exists and not settings.overwrite:
        raise UsageError(f"output {path} already exists; pass --resume to continue it or "
                         "--overwrite to replace it, or choose another --simfile/--outfile")
    if settings.resume:
        log.info("no %s to resume; starting a new file", path)
    model, sps = ingredients.model, ingredients.sps
    attrs = {key: value for key, value in identity.items() if key != "_compare"}
    attrs.update({
        "phot_units": "maggies",
        "extras_units": forward.extras_for(model, forward.filter_names(ingredients.obs)),
        "param_file": ingredients.paramfile.path,
        "param_file_text": ingredients.paramfile.source,
        "run_params": _jsonable(ingredients.run_params),
        "versions": _versions(),
        "sps_libraries": _sps_libraries(sps),
        "fixed_config": _fixed_config(ingredients),
        "created": _now(),
        "finished": "",
    })
    width = model.ndim + len(ingredients.obs["filters"]) + len(attrs["extras_units"]) + 0.125
    log.info("creating %s: %s rows of %d parameters and %d bands (%s MB, allocated now "
             "so that a full disk shows before any work)", path, f"{settings.n_samples:,}",
             model.ndim, len(ingredients.obs["filters"]),
             f"{settings.n_samples * width * 8 / 1e6:,.0f}")
    store = SimulationStore.create(
        path, theta_labels=model.theta_labels(),
        filter_names=forward.filter_names(ingredients.obs), extras=list(attrs["extras_units"]),
        n_samples=settings.n_samples, chunk_size=settings.chunk_size, seed=settings.seed,
        attrs=attrs, overwrite=exists and settings.overwrite)
    return store, 0


# ----------------------------------------------------------------------
# identity: what must match for --resume
def _identity(ingredients, settings, path_used):
    """Attributes that define the draws and the physics; all must match to resume."""
    from . import forward
    model = ingredients.model
    source = ingredients.paramfile.source
    return {
        "design": settings.design,
        "forward_path": path_used,
        "sps": _sps_name(ingredients.sps),
        "param_file_sha256": hashlib.sha256(source.encode()).hexdigest(),
        "prior": json.dumps(forward.prior_description(model)),
        "model_config": json.dumps(_model_config(model), sort_keys=True),
        "_compare": {"seed": settings.seed, "chunk_size": settings.chunk_size,
                     "theta_labels": list(model.theta_labels()),
                     "filter_names": forward.filter_names(ingredients.obs)},
    }


def _check_identity(store, identity, path):
    from .errors import StoreError
    identity = dict(identity)
    compare = identity.pop("_compare")
    stored = {"seed": store.seed, "chunk_size": store.chunk_size,
              "theta_labels": store.theta_labels, "filter_names": store.filter_names}
    names = {"param_file_sha256": "parameter file text", "model_config": "model",
             "prior": "priors", "sps": "sps", "forward_path": "forward path",
             "design": "design"}
    diffs = [f"{key} (file: {stored[key]}, now: {value})"
             for key, value in compare.items() if stored[key] != value]
    for key, value in identity.items():
        old = store.text_attr(key)
        if old != value:
            shown = (f"file: {old}, now: {value}" if len(str(value)) < 80 and
                     len(str(old)) < 80 else "differs")
            diffs.append(f"{names.get(key, key)} ({shown})")
    if diffs:
        raise StoreError(f"cannot --resume {path}: it was made with a different "
                         f"{'; '.join(diffs)}; rerun with the original settings, or "
                         "start a new file with --overwrite or another --simfile")


def _fixed_config(ingredients):
    """JSON of the model class, every fixed parameter and the sps's settings, in the
    form ``--train`` compares with the param file (:func:`.amortized.spec.model_config`)."""
    from .amortized import spec
    return json.dumps(spec.model_config(ingredients.model, ingredients.sps), sort_keys=True)


def _model_config(model):
    """The model's configuration as JSON-friendly data (free values left out)."""
    import numpy as np
    out = {}
    for name, info in model.config_dict.items():
        entry = {"N": int(info.get("N", 1)), "isfree": bool(info.get("isfree", False))}
        if not entry["isfree"]:
            entry["init"] = _jsonable(np.asarray(info.get("init")).tolist()
                                      if np.asarray(info.get("init")).dtype.kind in "biuf"
                                      else info.get("init"))
        prior = info.get("prior")
        if entry["isfree"] and prior is not None:
            entry["prior"] = type(prior).__name__
        dep = info.get("depends_on")
        if callable(dep):
            entry["depends_on"] = (f"{getattr(dep, '__module__', '')}."
                                   f"{getattr(dep, '__qualname__', repr(dep))}")
        out[name] = entry
    return {"class": type(model).__name__, "params": out}


# ----------------------------------------------------------------------
# provenance
def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _jsonable(value):
    return json.loads(json.dumps(value, default=repr))


def _versions():
    from importlib import metadata
    import platform
    out = {"python": platform.python_version()}
    for dist in ("prospect_sim", "astro-prospector", "numpy", "scipy", "h5py",
                 "astro-sedpy", "astropy", "fsps"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _sps_name(sps):
    library = getattr(sps, "library_name", None) or getattr(sps, "library", None)
    name = type(sps).__name__
    if isinstance(library, str):
        return f"{name}({library})"
    return name


def _sps_libraries(sps):
    try:
        libs = sps.ssp.libraries
        return [lib.decode() if isinstance(lib, bytes) else str(lib) for lib in libs]
    except (AttributeError, TypeError):
        return []


# ----------------------------------------------------------------------
# user experience
class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total, quiet):
    if quiet or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, unit="obj", unit_scale=True, desc="simulate",
                file=sys.stderr, mininterval=0.5, smoothing=0.3, dynamic_ncols=True)


def _summary(store, path, path_used, sps, pool, rows, elapsed, invalid):
    rate = rows / elapsed if elapsed > 0 and rows else 0.0
    workers = getattr(pool, "size", 1)
    size_mb = os.path.getsize(path) / 1e6
    log.info("simulated %s rows in %.1f s (%s objects/s, %d worker%s, %s path, %s)",
             f"{rows:,}", elapsed, f"{rate:,.0f}", workers, "" if workers == 1 else "s",
             path_used, _sps_name(sps))
    log.info("file: %s rows in %d/%d chunks, %s invalid (non-finite photometry, "
             "flagged in /valid)", f"{store.n_done:,}", int(store.chunks_done.sum()),
             store.n_chunks, f"{invalid:,}")
    log.info("wrote %s (%.0f MB); describe it with: python -m prospect_sim info %s",
             path, size_mb, path)
