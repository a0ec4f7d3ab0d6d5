"""The summary table of an ``--infer`` posterior file, and its console report of flags.

One row per object, in catalogue order:

==============================  ==========  ==============================================
column                          type        contents
==============================  ==========  ==============================================
``<id column>`` or ``row``      as stored   the catalogue's id (``--id_column``, else
                                            ``id`` or ``objid`` when present), else the
                                            row number
``<keep column>``               as stored   each ``--keep_columns`` column
``<param>_median``              f4          posterior median of each inferred parameter
``<param>_p2_5``, ``_p16``,     f4          its 2.5, 16, 84 and 97.5 percentiles
``_p84``, ``_p97_5``
``ess``                         f4          importance-sampling ESS (NaN without
                                            ``--importance``)
``n_bands``                     i2          bands used (present in the row)
``flags``                       u1          bits of :data:`.infer.FLAGS`
==============================  ==========  ==============================================

It is the compound dataset ``/summary`` of the posterior file, the only one
there, so ``astropy.table.Table.read("BASE_posterior.h5")`` opens it (and
``pandas.DataFrame(h5py.File(...)["summary"][:])``); ``--summary FILE``
writes it also to FILE (``.fits``, ``.csv``, ``.ecsv`` or ``.h5``). Text
columns are UTF-8 bytes (astropy reads them as such). The quantiles are
those of ``/median``, ``/p16``, ... exactly (same float32 values).
"""

import json
import os

import numpy as np

from ..errors import InferenceError, UsageError

__all__ = ["QUANTILES", "column_names", "write_into", "write_file", "check_path",
           "flag_report", "FORMATS"]

#: (dataset name, percentile) of every summary quantile, in column order.
QUANTILES = (("median", 50.0), ("p2_5", 2.5), ("p16", 16.0), ("p84", 84.0), ("p97_5", 97.5))

#: File extension -> astropy format of ``--summary FILE``.
FORMATS = {".fits": "fits", ".fit": "fits", ".csv": "ascii.csv", ".ecsv": "ascii.ecsv",
           ".h5": "hdf5", ".hdf5": "hdf5"}

_BLOCK = 65536

#: The ``/summary`` attributes as FITS header keywords.
_FITS_KEYS = {"flags": "FLAGS", "quantiles": "QUANTILE", "id_column": "IDCOLUMN",
              "param_labels": "PARAMS"}


def column_names(labels, id_name, keep):
    """The summary's columns, in order; a UsageError if two would have the same name."""
    names = [id_name] + list(keep)
    names += [f"{p}_{q}" for p in labels for q, _ in QUANTILES] + ["ess", "n_bands", "flags"]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"--keep_columns/--id_column: {', '.join(twice)} would be "
                         "two columns of the summary table (its own columns are "
                         "<param>_median, ..., ess, n_bands, flags); leave "
                         f"{'it' if len(twice) == 1 else 'them'} out")
    return names


def check_path(path, run_params):
    """Refuse, before any work, a ``--summary`` FILE of unknown type or that would be replaced."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in FORMATS:
        raise UsageError(f"--summary {path}: unknown table type {ext or '(none)'!r}; name a "
                         f"file ending in {', '.join(FORMATS)}")
    from ._paths import check_writable
    check_writable(str(path), run_params, "summary table")


def _text_as_bytes(values):
    b = [str(v).encode("utf-8") for v in values]
    return np.array(b, dtype=f"S{max([1] + [len(x) for x in b])}")


def write_into(h5):
    """Write ``/summary`` (replacing one there) from the posterior file's datasets.

    Parameters
    ----------
    h5 : h5py.File
        An ``--infer`` output open for writing, every batch done.
    """
    labels = [x.decode() if isinstance(x, bytes) else str(x) for x in h5.attrs["param_labels"]]
    id_name = h5.attrs.get("id_column", "") or "row"
    keep = json.loads(h5.attrs.get("keep_columns", "[]"))
    names = column_names(labels, id_name, keep)
    n = len(h5["flags"])
    carried = {}
    for name, ds in [(id_name, h5["id"])] + [(k, h5["columns"][k]) for k in keep]:
        if ds.dtype.kind == "O":
            carried[name] = _text_as_bytes(ds.asstr()[:])
        else:
            carried[name] = ds[:]
    dtype = [(c, carried[c].dtype) for c in [id_name] + keep]
    dtype += [(f"{p}_{q}", "f4") for p in labels for q, _ in QUANTILES]
    dtype += [("ess", "f4"), ("n_bands", "i2"), ("flags", "u1")]
    assert [d[0] for d in dtype] == names
    if "summary" in h5:
        del h5["summary"]
    out = h5.create_dataset("summary", (n,), dtype=dtype)
    for a in range(0, n, _BLOCK):
        b = min(a + _BLOCK, n)
        block = np.zeros(b - a, dtype=dtype)
        for c, v in carried.items():
            block[c] = v[a:b]
        for q, _ in QUANTILES:
            values = h5[q][a:b]
            for j, p in enumerate(labels):
                block[f"{p}_{q}"] = values[:, j]
        block["ess"] = h5["ess"][a:b] if "ess" in h5 else np.nan
        block["n_bands"] = (~h5["missing"][a:b]).sum(1)
        block["flags"] = h5["flags"][a:b]
        out[a:b] = block
    out.attrs["flags"] = h5.attrs["flags"]
    out.attrs["quantiles"] = json.dumps({q: v for q, v in QUANTILES})
    out.attrs["id_column"] = id_name
    out.attrs["param_labels"] = json.dumps(labels)


def write_file(posterior, path):
    """``--summary FILE``: the ``/summary`` of ``posterior`` as a FITS, CSV, ECSV or HDF5
    table, written under a temporary name then renamed. Returns ``path``."""
    from astropy.table import Table

    from ..outputs import atomic_path
    fmt = FORMATS[os.path.splitext(str(path))[1].lower()]
    table = Table.read(posterior, path="summary")
    if fmt.startswith("ascii"):
        table.convert_bytestring_to_unicode()
    if fmt == "fits":  # header keywords of at most 8 characters
        table.meta = {_FITS_KEYS.get(k, k[:8].upper()): v for k, v in table.meta.items()}
    kw = {"path": "summary"} if fmt == "hdf5" else {}
    with atomic_path(path, InferenceError, "summary table") as tmp:
        table.write(tmp, format=fmt, overwrite=True, **kw)
    return str(path)


def flag_report(flags, missing, flag_bits, filter_names, min_ess=None):
    """Lines for the console on the flagged rows (empty when none is flagged).

    Parameters
    ----------
    flags : (N,) uint8 array
    missing : (N, B) bool array
    flag_bits : dict
        Name -> bit (:data:`prospect_sim.amortized.infer.FLAGS`).
    filter_names : list of str
    min_ess : float, optional
    """
    flags = np.asarray(flags)
    n_flag = int(np.count_nonzero(flags))
    if not n_flag:
        return []
    why = {"bad_value": "a non-numeric value (not inferred)",
           "no_bands": "no usable band (not inferred)",
           "no_condition": "a missing --condition value (not inferred)",
           "unseen_missing": "a band missing that was never missing in training (the "
                             "posterior assumes a case the network never saw: unreliable)",
           "low_ess": f"importance-sampling ESS below --min_ess {min_ess:g}"
           if min_ess is not None else "low importance-sampling ESS"}
    lines = [f"{n_flag} of {len(flags)} objects flagged:"]
    for name, bit in flag_bits.items():
        hit = (flags & bit) > 0
        count = int(hit.sum())
        if not count:
            continue
        text = f"  {count} with flag {bit} ({name}): {why.get(name, name)}"
        if name == "unseen_missing":
            per_band = (np.asarray(missing)[hit]).sum(0)
            text += "; " + ", ".join(f"{f} missing in {int(k)}" for f, k in
                                     zip(filter_names, per_band) if k)
        lines.append(text)
    return lines
