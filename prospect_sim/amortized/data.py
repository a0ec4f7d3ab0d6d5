"""The simulation file as training data, streamed from disk.

The file (layout in DESIGN.md section 4) is read in contiguous blocks of
``block_rows`` rows; ``shuffle_blocks`` blocks drawn in random order are
held in memory at a time, shuffled together and cut into batches, so memory
is O(block_rows * shuffle_blocks) whatever the number of rows (1e7 rows are
never loaded). Rows are split in order: training rows first, then
validation, then the held-out test rows used by ``--validate`` (samples are
iid, so a split by position is a random split).

Rows that are flagged invalid, whose chunk is not done, or whose ``theta``
or ``phot`` is not finite are dropped and counted (:attr:`SimulationData.n_dropped`).
A done chunk whose rows fail their checksum (corrupted bytes) stops the
opening with a :class:`~prospect_sim.errors.TrainingError` naming the chunks:
the scan that finds the usable rows checks them in the same pass.

Like lampe's ``H5Dataset``, a loader is an iterable of ``(theta, phot)``
numpy batches; the order of an epoch depends only on the generator passed.
"""

import hashlib
import json
import logging

import h5py
import numpy as np

from ..errors import TrainingError
from ..store import chunk_ranges, scan_chunks, text_attribute
from . import spec

__all__ = ["SimulationData", "file_identity"]

log = logging.getLogger(__name__)

_ID_ATTRS = ("theta_labels", "filter_names", "prior", "n_samples", "chunk_size", "seed",
             "schema_version")


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def file_identity(h5):
    """sha256 of the identifying attributes and the row count of a simulation file."""
    ident = {k: _attr(h5.attrs[k]) for k in _ID_ATTRS if k in h5.attrs}
    ident["n_rows"] = int(h5["theta"].shape[0])
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


class SimulationData:
    """A simulation HDF5 file opened read-only for training.

    Parameters
    ----------
    path : str
    val_fraction : float
        Fraction of usable rows used for validation.
    n_test : int
        Rows held out for ``--validate`` (at most 10 per cent of the usable rows).
    block_rows : int
        Rows read at a time.
    """

    def __init__(self, path, val_fraction=0.1, n_test=2000, block_rows=4096):
        self.path = str(path)
        try:
            self.h5 = h5py.File(self.path, "r")
        except (OSError, FileNotFoundError) as err:
            raise TrainingError(f"cannot open the simulation file {self.path!r} ({err}); run "
                                "the param file with --simulate first, or name the file "
                                "with --simfile") from None
        try:
            self._open(val_fraction, n_test, block_rows)
        except BaseException:   # a refused file is closed, so it can be opened again
            self.h5.close()
            raise

    def _open(self, val_fraction, n_test, block_rows):
        missing = [k for k in ("theta", "phot") if k not in self.h5]
        missing += [a for a in ("theta_labels", "filter_names") if a not in self.h5.attrs]
        if missing:
            raise TrainingError(f"{self.path!r} is not a prospect_sim simulation file: it "
                                f"lacks {', '.join(missing)}")
        a = self.h5.attrs
        self.theta_labels = [str(x) for x in _attr(a["theta_labels"])]
        self.filter_names = [str(x) for x in _attr(a["filter_names"])]
        prior = _attr(a.get("prior", "{}"))
        self.prior = json.loads(prior) if isinstance(prior, str) else dict(prior)
        self.config = self._config()
        self.identity = file_identity(self.h5)
        self.n_rows = int(self.h5["theta"].shape[0])
        self.block_rows = int(block_rows)
        self._good = self._scan()
        self.n_good = int(self._good.sum())
        self.n_dropped = self.n_rows - self.n_good
        if self.n_good < 10:
            raise TrainingError(f"{self.path!r} has {self.n_good} usable rows out of "
                                f"{self.n_rows}; simulate more (--simulate --n_samples)")
        good_idx = np.flatnonzero(self._good)
        n_test = min(int(n_test), self.n_good // 10)
        n_val = max(1, int(round(val_fraction * self.n_good)))
        n_train = self.n_good - n_val - n_test
        if n_train < 1:
            raise TrainingError(f"--val_fraction {val_fraction} leaves no training rows "
                                f"out of {self.n_good}")
        # split by position among usable rows: [train | val | test]
        self.split = {"train": (0, int(good_idx[n_train - 1]) + 1),
                      "val": (int(good_idx[n_train]), int(good_idx[n_train + n_val - 1]) + 1),
                      "test": ((int(good_idx[n_train + n_val]), self.n_rows) if n_test
                               else (self.n_rows, self.n_rows))}
        self.counts = {"train": n_train, "val": n_val, "test": n_test}

    @property
    def problem(self):
        """What the file was simulated for (:func:`.spec.model_problem`'s keys); its
        ``config`` is None when the file does not record it."""
        return {"theta_labels": self.theta_labels, "filter_names": self.filter_names,
                "prior": self.prior, "config": self.config}

    def _config(self):
        """The file's ``fixed_config`` (:func:`.spec.model_config`); from ``model_config``
        for a file made before it was recorded; None for neither."""
        text = text_attribute(self.h5, "fixed_config")
        if text:
            try:
                return json.loads(text)
            except ValueError:
                raise TrainingError(f"{self.path!r}: its fixed_config attribute is not "
                                    "JSON; the file is damaged: rerun --simulate with "
                                    "--overwrite") from None
        text = text_attribute(self.h5, "model_config")
        return spec.legacy_config(text) if text else None

    def _scan(self):
        """Usable-row mask (N,); done chunks are checked against their checksums."""
        if "chunk_checksum" in self.h5 and "chunks_done" in self.h5 \
                and "chunk_size" in self.h5.attrs:
            return self._scan_chunks()
        log.warning("%s has no chunk checksums (it was not written by --simulate); its "
                    "integrity is not checked", self.path)
        good = np.ones(self.n_rows, dtype=bool)
        if "valid" in self.h5:
            good &= self.h5["valid"][:].astype(bool)
        if "chunks_done" in self.h5 and "chunk_size" in self.h5.attrs:
            done = self.h5["chunks_done"][:].astype(bool)
            size = int(self.h5.attrs["chunk_size"])
            row_done = np.repeat(done, size)[: self.n_rows]
            if len(row_done) < self.n_rows:
                row_done = np.concatenate([row_done, np.zeros(self.n_rows - len(row_done), bool)])
            if not row_done.all():
                log.warning("%s: %d of %d chunks are not simulated yet; training on the rest",
                            self.path, int((~done).sum()), len(done))
            good &= row_done
        n_bad = 0
        for start in range(0, self.n_rows, self.block_rows):
            stop = min(start + self.block_rows, self.n_rows)
            theta, phot = self.h5["theta"][start:stop], self.h5["phot"][start:stop]
            finite = np.isfinite(theta).all(1) & np.isfinite(phot).all(1)
            n_bad += int((good[start:stop] & ~finite).sum())
            good[start:stop] &= finite
        if n_bad:
            log.warning("%s: dropped %d rows with NaN/inf theta or photometry", self.path, n_bad)
        self.n_nonfinite = n_bad
        return good

    def _scan_chunks(self):
        """:meth:`_scan` of a file written by --simulate: one pass, chunk by chunk."""
        good = np.zeros(self.n_rows, dtype=bool)
        bad, n_bad, n_undone, n_chunks = [], 0, 0, 0
        for k, rows, done, ok, arrays in scan_chunks(self.h5):
            n_chunks += 1
            if not done:
                n_undone += 1
                continue
            if not ok:
                bad.append(k)
                continue
            finite = np.isfinite(arrays["theta"]).all(1) & np.isfinite(arrays["phot"]).all(1)
            valid = arrays["valid"].astype(bool)
            n_bad += int((valid & ~finite).sum())
            good[rows] = valid & finite
        if bad:
            raise TrainingError(
                f"simulation file {self.path!r}: chunk(s) {chunk_ranges(bad)} of {n_chunks} "
                "fail their checksum (corrupted bytes); rerun --simulate with --resume to "
                f"recompute them, or see python -m prospect_sim info {self.path}")
        if n_undone:
            log.warning("%s: %d of %d chunks are not simulated yet; training on the rest",
                        self.path, n_undone, n_chunks)
        if n_bad:
            log.warning("%s: dropped %d rows with NaN/inf theta or photometry", self.path, n_bad)
        self.n_nonfinite = n_bad
        return good

    def close(self):
        self.h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read(self, start, stop):
        """Usable rows in [start, stop): ``(theta (n, D), phot (n, B))`` float64."""
        keep = self._good[start:stop]
        theta = self.h5["theta"][start:stop][keep].astype(np.float64)
        phot = self.h5["phot"][start:stop][keep].astype(np.float64)
        return theta, phot

    def _blocks(self, part):
        lo, hi = self.split[part]
        return [(s, min(s + self.block_rows, hi)) for s in range(lo, hi, self.block_rows)]

    def batches(self, part, batch_size, rng=None, shuffle_blocks=16):
        """Iterate over ``(theta, phot)`` batches of a split.

        Parameters
        ----------
        part : {"train", "val", "test"}
        batch_size : int
        rng : numpy.random.Generator, optional
            Shuffles block order and rows within a group of ``shuffle_blocks``
            blocks; ``None`` keeps file order.
        """
        blocks = self._blocks(part)
        if rng is not None:
            blocks = [blocks[i] for i in rng.permutation(len(blocks))]
        step = shuffle_blocks if rng is not None else 1
        carry = None
        for g in range(0, len(blocks), step):
            parts = [self.read(*b) for b in blocks[g:g + step]]
            theta = np.concatenate([p[0] for p in parts])
            phot = np.concatenate([p[1] for p in parts])
            if carry is not None:
                theta, phot = np.concatenate([carry[0], theta]), np.concatenate([carry[1], phot])
            if rng is not None:
                order = rng.permutation(len(theta))
                theta, phot = theta[order], phot[order]
            n_full = len(theta) // batch_size * batch_size
            for s in range(0, n_full, batch_size):
                yield theta[s:s + batch_size], phot[s:s + batch_size]
            carry = (theta[n_full:], phot[n_full:])
        if carry is not None and len(carry[0]):
            yield carry

    def sample_rows(self, part, n, rng):
        """Up to ``n`` usable rows of a split drawn from random blocks (for statistics)."""
        blocks = self._blocks(part)
        thetas, phots, got = [], [], 0
        for i in rng.permutation(len(blocks)):
            t, p = self.read(*blocks[i])
            thetas.append(t)
            phots.append(p)
            got += len(t)
            if got >= n:
                break
        return np.concatenate(thetas)[:n], np.concatenate(phots)[:n]
