"""The simulation HDF5 file: its layout, and the only code that writes it.

The low-level file helpers it writes through (storage chunking, attribute
encoding, the atomic move into place) are in :mod:`prospect_sim.h5files`.

A simulation file holds ``n_samples`` prior draws split into fixed-size
chunks. Chunk ``k`` covers rows ``k * chunk_size`` up to
``min((k + 1) * chunk_size, n_samples)`` and is either complete (its flag in
``/chunks_done`` is set) or not. Layout (``attrs['schema_version'] == 1``)::

    /theta           (N, D) float64  free parameters, in ``model.theta`` order
    /phot            (N, B) float64  noiseless model photometry, maggies
    /extras/<name>   (N,)   float64  derived quantities (see ``attrs['extras']``)
    /valid           (N,)   bool     the row is a usable example (finite prediction)
    /chunks_done     (K,)   bool     chunk k is complete
    /chunk_checksum  (K,)   uint32   CRC-32 of chunk k's rows, for integrity checks

Rows of chunks that are not done hold NaN (``valid`` False). Every reader
should use only rows whose chunk is done and whose ``valid`` flag is set.

Attributes (written when the file is created, before any row):
``schema_version`` (int), ``theta_labels``, ``filter_names`` and ``extras``
(arrays of str), ``prior`` (JSON: ``{label: {"distribution": name, "params":
{...}, "bounds": [lo, hi]}}`` for each element of theta; infinite bounds are
written as JSON ``Infinity``, which Python's :func:`json.loads` reads),
``n_samples``, ``chunk_size``, ``seed``, ``design``, and provenance (see
:meth:`SimulationStore.create`), among it ``fixed_config`` (JSON: the model
class, every fixed parameter and the sps's settings, which ``--train``
compares with the param file).

How the file survives interruption: every dataset is allocated at full size
when the file is created (or grown), so writing a chunk changes raw data only,
never HDF5 metadata. A chunk's rows and checksum are written and flushed
before its ``chunks_done`` flag is set and flushed. A process killed at any
moment therefore leaves a readable file whose done chunks are intact; a
resumed run recomputes the rest. A full disk shows up when the file is
created or grown, before any work is done.

Example
-------
>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "sims.h5")
>>> with SimulationStore.create(path, theta_labels=["a"], filter_names=["f"],
...                             extras=["mfrac"], n_samples=3, chunk_size=2,
...                             seed=1) as store:
...     store.write_chunk(0, np.zeros((2, 1)), np.ones((2, 1)),
...                       {"mfrac": np.ones(2)}, np.ones(2, bool))
...     store.missing_chunks()
[1]
>>> SimulationStore(path).chunks_done.tolist()
[True, False]
"""

import json
import logging
import os
import tempfile

import h5py
import numpy as np

from .errors import StoreError
from .h5files import (_allocate, _as_str_list, _checksum, _default_mode,
                      _move_into_place, _open_h5, _set_attr, _str_array,
                      _unlink_quietly)

__all__ = ["SCHEMA_VERSION", "SimulationStore", "n_chunks", "scan_chunks", "chunk_ranges",
           "text_attribute"]

log = logging.getLogger(__name__)

#: Version of the layout above; readers refuse files with another version.
SCHEMA_VERSION = 1

_REQUIRED_ATTRS = ("schema_version", "theta_labels", "filter_names", "extras",
                   "n_samples", "chunk_size", "seed")


def n_chunks(n_samples, chunk_size):
    """Number of chunks needed for ``n_samples`` rows (the last may be partial)."""
    return -(-int(n_samples) // int(chunk_size))


def _storage_error(path, action, exc):
    """A StoreError for an OSError from h5py or the OS, with a fix."""
    text = str(exc)
    if "unable to lock" in text.lower() or "locking" in text.lower():
        hint = ("it is open for writing by another process; wait for that run "
                "to finish or stop it")
    elif isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        hint = "there is no such folder; create it or choose another --simfile or --outfile"
    elif isinstance(exc, PermissionError) or "ermission" in text:
        hint = "the folder is not writable; choose another --simfile or --outfile"
    elif ("No space" in text or "too large" in text or "errno = 27" in text
          or "errno = 28" in text or getattr(exc, "errno", None) in (27, 28)):
        hint = ("the disk is full (or the file size limit is reached); free space or "
                "choose another --simfile")
    elif "signature" in text or "truncated" in text.lower() or "eof" in text.lower():
        hint = ("it is truncated or is not an HDF5 file; remove it or rerun "
                "with --overwrite")
    else:
        hint = "check the path, or rerun with --overwrite to start a new file"
    return StoreError(f"cannot {action}: {text}; {hint}")


class SimulationStore:
    """A simulation HDF5 file, opened for reading (default) or appending.

    Parameters
    ----------
    path : str or path-like
        An existing simulation file.
    mode : {"r", "r+"}
        ``"r"`` opens read-only (every write raises :class:`StoreError`);
        ``"r+"`` allows :meth:`write_chunk` and :meth:`grow`.

    Raises
    ------
    StoreError
        The file is missing, unreadable, truncated, of another schema version,
        or its datasets do not have the shapes its attributes promise.
    """

    def __init__(self, path, mode="r"):
        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
        self.path = str(path)
        self.read_only = mode == "r"
        if not os.path.exists(self.path):
            raise StoreError(f"simulation file {self.path} does not exist; run "
                             "--simulate first or pass the right --simfile")
        try:
            self._f = _open_h5(self.path, mode)
        except OSError as exc:
            raise _storage_error(self.path, f"open simulation file {self.path}", exc) from None
        try:
            self._check_structure()
        except BaseException:
            self._f.close()
            raise

    # ------------------------------------------------------------------
    # creation
    @classmethod
    def create(cls, path, *, theta_labels, filter_names, extras, n_samples,
               chunk_size, seed, attrs=None, overwrite=False):
        """Create a new, empty simulation file and return it opened ``"r+"``.

        The file is built and fully allocated under a temporary name in the
        same folder, then moved into place: an existing ``path`` is never
        replaced unless ``overwrite`` is true (mode ``"w-"`` semantics), and a
        failure (no space, no permission) leaves any existing file untouched.

        Parameters
        ----------
        path : str or path-like
            Where the file goes.
        theta_labels : sequence of str, length D
            Names of the free parameters, in ``model.theta`` order.
        filter_names : sequence of str, length B
            Names of the filters of ``/phot``.
        extras : sequence of str
            Names of the ``/extras`` datasets.
        n_samples, chunk_size, seed : int
            Number of rows, rows per chunk, seed of the draws.
        attrs : dict, optional
            More root attributes: str, numbers, or lists of str. Values that
            are dicts are stored as JSON text. Text longer than 32 kB is
            stored as a string dataset ``/provenance/<name>`` instead.
        overwrite : bool
            Replace an existing file at ``path``.
        """
        path = str(path)
        n_samples, chunk_size = int(n_samples), int(chunk_size)
        if n_samples <= 0 or chunk_size <= 0:
            raise StoreError(f"n_samples and chunk_size must be positive, got "
                             f"{n_samples} and {chunk_size}")
        if os.path.exists(path) and not overwrite:
            raise StoreError(f"simulation file {path} already exists; pass "
                             "--resume to continue it or --overwrite to replace it")
        folder = os.path.dirname(os.path.abspath(path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-",
                                       suffix=".h5", dir=folder)
            os.close(fd)
        except OSError as exc:
            raise _storage_error(path, f"create simulation file {path}", exc) from None
        try:
            with h5py.File(tmp, "w") as f:
                _write_layout(f, list(theta_labels), list(filter_names), list(extras),
                              n_samples, chunk_size, int(seed), dict(attrs or {}))
            _move_into_place(tmp, path, overwrite)
        except (OSError, RuntimeError) as exc:
            _unlink_quietly(tmp)
            raise _storage_error(path, f"create simulation file {path}", exc) from None
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return cls(path, "r+")

    # ------------------------------------------------------------------
    # context manager and closing
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Flush and close the file (safe to call twice)."""
        if self._f.id.valid:
            self._f.close()

    def __repr__(self):
        state = "closed" if not self._f.id.valid else ("read-only" if self.read_only else "r+")
        return f"SimulationStore({self.path!r}, {state})"

    # ------------------------------------------------------------------
    # what the file holds
    @property
    def attrs(self):
        """The root attributes (h5py ``AttributeManager``; read them, do not write)."""
        return self._f.attrs

    @property
    def file(self):
        """The underlying ``h5py.File`` (for reading)."""
        return self._f

    @property
    def n_samples(self):
        return self._meta["n_samples"]

    @property
    def chunk_size(self):
        return self._meta["chunk_size"]

    @property
    def seed(self):
        return self._meta["seed"]

    @property
    def n_chunks(self):
        return n_chunks(self.n_samples, self.chunk_size)

    @property
    def theta_labels(self):
        return list(self._meta["theta_labels"])

    @property
    def filter_names(self):
        return list(self._meta["filter_names"])

    @property
    def extras(self):
        return list(self._meta["extras"])

    @property
    def prior(self):
        """The prior description, ``{label: {"distribution", "params", "bounds"}}``."""
        text = self.text_attr("prior")
        return json.loads(text) if text else {}

    def text_attr(self, name, default=None):
        """A text attribute, or its ``/provenance/<name>`` dataset when it was long."""
        return text_attribute(self._f, name, default)

    @property
    def chunks_done(self):
        """(K,) bool: which chunks are complete."""
        return self._dsets["chunks_done"][()].astype(bool)

    def missing_chunks(self):
        """Ids of the chunks that are not done, in increasing order."""
        return np.flatnonzero(~self.chunks_done).tolist()

    def chunk_rows(self, k):
        """The row ``slice`` of chunk ``k``."""
        start = int(k) * self.chunk_size
        return slice(start, min(start + self.chunk_size, self.n_samples))

    @property
    def n_done(self):
        """Number of rows in complete chunks."""
        done = self.chunks_done
        rows = done.sum() * self.chunk_size
        if done.size and done[-1]:
            rows -= done.size * self.chunk_size - self.n_samples
        return int(rows)

    # ------------------------------------------------------------------
    # writing
    def _require_writable(self):
        if self.read_only:
            raise StoreError(f"simulation file {self.path} is opened read-only")
        if not self._f.id.valid:
            raise StoreError(f"simulation file {self.path} is closed")

    def write_chunk(self, k, theta, phot, extras, valid):
        """Write chunk ``k`` at its rows, flush, then mark it done.

        Parameters
        ----------
        k : int
            Chunk id, ``0 <= k < n_chunks``.
        theta : ndarray (n, D)
        phot : ndarray (n, B), maggies
        extras : dict of ndarray (n,)
            One entry per name in :attr:`extras`.
        valid : ndarray (n,) bool
            ``n`` is the number of rows of chunk ``k``.
        """
        self._require_writable()
        k = int(k)
        if not 0 <= k < self.n_chunks:
            raise StoreError(f"chunk id {k} is outside 0..{self.n_chunks - 1} of {self.path}")
        rows = self.chunk_rows(k)
        n = rows.stop - rows.start
        arrays = {"theta": np.asarray(theta, dtype=np.float64),
                  "phot": np.asarray(phot, dtype=np.float64),
                  "valid": np.asarray(valid, dtype=bool)}
        for name in self.extras:
            arrays["extras/" + name] = np.asarray(extras[name], dtype=np.float64)
        dsets = self._dsets
        for key, arr in arrays.items():
            expected = (n,) + self._meta["widths"][key]
            if arr.shape != expected:
                raise StoreError(f"chunk {k}: {key} has shape {arr.shape}, expected {expected}")
        try:
            for key, arr in arrays.items():
                dsets[key][rows] = arr
            dsets["chunk_checksum"][k] = _checksum(arrays[key] for key in self._data_keys())
            self._f.flush()
            dsets["chunks_done"][k] = True
            self._f.flush()
        except (OSError, RuntimeError) as exc:
            raise _storage_error(self.path, f"write chunk {k} to {self.path} (completed "
                                 "chunks are kept)", exc) from None

    def grow(self, n_samples):
        """Raise ``n_samples`` (for ``--resume`` with a larger ``--n_samples``).

        The grown file is built under a temporary name beside this one (new
        rows allocated at once, done chunks copied chunk by chunk) and then
        moved into place, so a full disk fails here, before any work, and
        leaves this file as it was. A last chunk that was partial is not
        copied: it is completed with the same draws a run at the new size
        would make.
        """
        self._require_writable()
        old, new = self.n_samples, int(n_samples)
        if new < old:
            raise StoreError(f"{self.path} holds n_samples={old}; cannot shrink it "
                             f"to {new} (use a new --simfile or --overwrite)")
        if new == old:
            return
        done = self.chunks_done
        if old % self.chunk_size:
            done[-1] = False
        sums = self._dsets["chunk_checksum"][()]
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(self.path) + "-",
                                       suffix=".h5", dir=folder)
            os.close(fd)
        except OSError as exc:
            raise _storage_error(self.path, f"grow {self.path} to n_samples={new} (the file "
                                 "is unchanged)", exc) from None
        try:
            with h5py.File(tmp, "w") as g:
                _write_layout(g, self.theta_labels, self.filter_names, self.extras, new,
                              self.chunk_size, self.seed, {})
                for name in self._f.attrs:
                    g.attrs.create(name, self._f.attrs[name],
                                   dtype=self._f.attrs.get_id(name).dtype)
                g.attrs["n_samples"] = new
                if "provenance" in self._f:
                    self._f.copy("provenance", g)
                for k in np.flatnonzero(done):
                    rows = self.chunk_rows(k)
                    for key in self._data_keys():
                        g[key][rows] = self._dsets[key][rows]
                    g["chunk_checksum"][k] = sums[k]
                g["chunks_done"][: len(done)] = done
        except (OSError, RuntimeError) as exc:
            _unlink_quietly(tmp)
            raise _storage_error(self.path, f"grow {self.path} to n_samples={new} (the file "
                                 "is unchanged)", exc) from None
        except BaseException:
            _unlink_quietly(tmp)
            raise
        self._f.close()
        _default_mode(tmp)
        os.replace(tmp, self.path)
        try:
            self._f = _open_h5(self.path, "r+")
        except OSError as exc:
            raise _storage_error(self.path, f"reopen {self.path}", exc) from None
        self._check_structure()
        log.info("grew %s from %d to %d samples", self.path, old, new)

    def set_attrs(self, **attrs):
        """Set root attributes (provenance such as ``last_resumed``)."""
        self._require_writable()
        for name, value in attrs.items():
            _set_attr(self._f, name, value)
        self._f.flush()

    # ------------------------------------------------------------------
    # checking
    def _data_keys(self):
        return _data_keys(self.extras)

    def _check_structure(self):
        """Check attributes and dataset shapes; cache what every write needs."""
        f, path = self._f, self.path
        missing = [a for a in _REQUIRED_ATTRS if a not in f.attrs]
        if missing:
            raise StoreError(f"{path} is not a prospect_sim simulation file (attributes "
                             f"{', '.join(missing)} are missing); it may be truncated or "
                             "written by another program; rerun with --overwrite")
        version = int(f.attrs["schema_version"])
        if version != SCHEMA_VERSION:
            raise StoreError(f"{path} has schema_version {version}; this prospect_sim "
                             f"reads version {SCHEMA_VERSION}; use a matching prospect_sim "
                             "or remake the file")
        try:
            self._meta = {"n_samples": int(f.attrs["n_samples"]),
                          "chunk_size": int(f.attrs["chunk_size"]),
                          "seed": int(f.attrs["seed"]),
                          "theta_labels": _as_str_list(f.attrs["theta_labels"]),
                          "filter_names": _as_str_list(f.attrs["filter_names"]),
                          "extras": [n for n in _as_str_list(f.attrs["extras"]) if n]}
        except (TypeError, ValueError, OSError) as exc:
            raise StoreError(f"{path} has unreadable attributes ({exc}); the file is "
                             "corrupt; rerun with --overwrite") from None
        D, B = len(self.theta_labels), len(self.filter_names)
        N, K = self.n_samples, self.n_chunks
        expected = {"theta": (N, D), "phot": (N, B), "valid": (N,),
                    "chunks_done": (K,), "chunk_checksum": (K,)}
        expected.update({"extras/" + n: (N,) for n in self.extras})
        for key, shape in expected.items():
            try:
                actual = f[key].shape
            except (KeyError, OSError):
                raise StoreError(f"{path} lacks dataset /{key}; the file is incomplete "
                                 "or corrupt; rerun with --overwrite") from None
            if actual != shape:
                raise StoreError(f"{path}: /{key} has shape {actual} but the attributes "
                                 f"promise {shape}; the file is corrupt; rerun with "
                                 "--overwrite")
        self._dsets = {key: f[key] for key in expected}
        self._meta["widths"] = {key: shape[1:] for key, shape in expected.items()}

    def verify(self, repair=False):
        """Read every done chunk and check it against its checksum.

        Parameters
        ----------
        repair : bool
            Mark chunks that fail as not done (so ``--resume`` recomputes
            them) instead of raising. Needs mode ``"r+"``.

        Returns
        -------
        dict
            ``chunks_done``, ``rows_done``, ``invalid`` (rows flagged invalid
            among done rows) and ``bad_chunks`` (ids that failed).

        Raises
        ------
        StoreError
            A done chunk fails its checksum or cannot be read (not ``repair``).
        """
        if repair:
            self._require_writable()
        done = self.chunks_done
        sums = self._dsets["chunk_checksum"][()]
        bad, invalid = [], 0
        for k in np.flatnonzero(done):
            rows = self.chunk_rows(k)
            try:
                arrays = [self._dsets[key][rows] for key in self._data_keys()]
            except OSError as exc:
                if not repair:
                    raise _storage_error(self.path, f"read chunk {k} of {self.path}",
                                         exc) from None
                bad.append(int(k))
                continue
            if _checksum(arrays) != sums[k]:
                bad.append(int(k))
                continue
            invalid += int(np.count_nonzero(~arrays[2]))
        if bad and not repair:
            raise StoreError(f"{self.path}: chunk(s) {chunk_ranges(bad)} fail their checksum; "
                             "the file is corrupt; rerun with --resume to recompute them "
                             "or --overwrite to start again")
        if bad:
            for k in bad:
                self._dsets["chunks_done"][k] = False
            self._f.flush()
            log.warning("%s: chunk(s) %s failed their checksum and will be recomputed",
                        self.path, chunk_ranges(bad))
            done = self.chunks_done
        return {"chunks_done": int(done.sum()), "rows_done": self.n_done,
                "invalid": invalid, "bad_chunks": bad}


# ----------------------------------------------------------------------
# reading a whole file once
def scan_chunks(f):
    """Read an open simulation file chunk by chunk, checking each done chunk.

    For readers that stream every row anyway (``--train``): the one pass that
    hands them the data also checks it against the checksums, as
    :meth:`SimulationStore.verify` does.

    Parameters
    ----------
    f : h5py.File
        A file with the layout above (read-only is enough). A file without
        ``/chunk_checksum`` (written by another program) is read unchecked.

    Yields
    ------
    k : int
        Chunk id, in increasing order.
    rows : slice
        Its rows.
    done : bool
        Its ``/chunks_done`` flag.
    ok : bool or None
        Its rows match its checksum; None when it is not done or the file
        records no checksums; False also when its rows cannot be read.
    arrays : dict or None
        ``theta`` (n, D), ``phot`` (n, B), ``valid`` (n,) and ``extras/<name>``
        of the chunk; None when they cannot be read.
    """
    size, n = int(f.attrs["chunk_size"]), int(f["theta"].shape[0])
    done = f["chunks_done"][()].astype(bool)
    sums = f["chunk_checksum"][()] if "chunk_checksum" in f else None
    extras = [e for e in _as_str_list(f.attrs["extras"]) if e] if "extras" in f.attrs else []
    keys = [key for key in _data_keys(extras) if key in f]
    for k in range(n_chunks(n, size)):
        rows = slice(k * size, min((k + 1) * size, n))
        is_done = bool(k < len(done) and done[k])
        try:
            arrays = {key: f[key][rows] for key in keys}
        except OSError:
            yield k, rows, is_done, (False if is_done else None), None
            continue
        ok = None
        if is_done and sums is not None and k < len(sums):
            ok = bool(_checksum(arrays[key] for key in keys) == sums[k])
        yield k, rows, is_done, ok, arrays


# ----------------------------------------------------------------------
# helpers (the low-level HDF5 ones are in h5files.py)
def text_attribute(f, name, default=None):
    """Text attribute ``name`` of the open file ``f``, or its ``/provenance/<name>``
    dataset when it was too long for an attribute; ``default`` when neither."""
    if name in f.attrs:
        value = f.attrs[name]
    elif "provenance/" + name in f:
        value = f["provenance/" + name][()]
    else:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _data_keys(extras):
    """The datasets a chunk's checksum covers, in the order it covers them."""
    return ["theta", "phot", "valid"] + ["extras/" + n for n in extras]


def _write_layout(f, theta_labels, filter_names, extras, n_samples, chunk_size,
                  seed, attrs):
    """Write attributes, then allocate every dataset at full size."""
    _set_attr(f, "schema_version", SCHEMA_VERSION)
    f.attrs["theta_labels"] = _str_array(theta_labels)
    f.attrs["filter_names"] = _str_array(filter_names)
    # an empty list cannot be an HDF5 attribute; [""] stands for "none"
    f.attrs["extras"] = _str_array(extras or [""])
    f.attrs["n_samples"] = n_samples
    f.attrs["chunk_size"] = chunk_size
    f.attrs["seed"] = seed
    for name, value in attrs.items():
        _set_attr(f, name, value)
    K = n_chunks(n_samples, chunk_size)
    D, B = len(theta_labels), len(filter_names)
    for name, width, dtype, fill in (("theta", D, np.float64, np.nan),
                                     ("phot", B, np.float64, np.nan),
                                     ("valid", 0, bool, False)):
        _allocate(f, name, n_samples, width, dtype, fill, chunk_size)
    for name in extras:
        _allocate(f, "extras/" + name, n_samples, 0, np.float64, np.nan, chunk_size)
    _allocate(f, "chunks_done", K, 0, bool, False, max(1, min(K, 1 << 16)))
    _allocate(f, "chunk_checksum", K, 0, np.uint32, 0, max(1, min(K, 1 << 16)))


def chunk_ranges(ids):
    """'0-3, 7' for [0, 1, 2, 3, 7].

    >>> chunk_ranges([7, 0, 1, 2, 3])
    '0-3, 7'
    """
    out, ids = [], sorted(ids)
    start = prev = ids[0]
    for k in ids[1:] + [None]:
        if k is not None and k == prev + 1:
            prev = k
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if k is not None:
            start = prev = k
    return ", ".join(out)
