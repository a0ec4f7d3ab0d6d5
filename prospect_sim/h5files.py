"""Low-level HDF5 file helpers for :mod:`prospect_sim.store`.

How a file sits on disk, below the simulation layout that ``store`` defines:

- on-disk layout: datasets allocated at full size when created, in storage
  chunks of about 1 MB that tile the simulation chunks (:func:`_allocate`),
  and writers that bypass HDF5's chunk cache (:func:`_open_h5`);
- atomic move into place: a file built under a temporary name is given the
  mode a new file would get and linked or renamed to its final path, never
  replacing an existing file unless asked (:func:`_move_into_place`);
- attribute encoding: lists of str as string arrays, dicts and mixed lists as
  JSON, long text as ``/provenance/<name>`` datasets (:func:`_set_attr`), and
  back (:func:`_as_str_list`);
- the CRC-32 checksum recorded for each chunk (:func:`_checksum`).

Everything here is private to the package; :mod:`prospect_sim.store` is the
only caller.
"""

import json
import os
import zlib
from pathlib import Path

import h5py
import numpy as np

from .errors import StoreError

__all__ = []

#: Target size in bytes of one HDF5 storage chunk.
_H5_CHUNK_BYTES = 1 << 20


def _open_h5(path, mode):
    # A writer writes whole storage chunks: HDF5's chunk cache would only add
    # copies (and, through allocator fragmentation, tens of MB of memory that
    # grow with the number of rows written).
    return h5py.File(path, mode, rdcc_nbytes=0) if mode != "r" else h5py.File(path, mode)


def _h5_chunk_rows(chunk_size, width):
    """Rows per HDF5 storage chunk: about 1 MB, and a divisor of ``chunk_size``
    when one is close, so that every simulation chunk is whole storage chunks."""
    limit = max(1, _H5_CHUNK_BYTES // (8 * max(1, width)))
    if chunk_size <= limit:
        return int(chunk_size)
    divisors = set()
    for d in range(1, int(chunk_size ** 0.5) + 1):
        if chunk_size % d == 0:
            divisors.update((d, chunk_size // d))
    best = max(d for d in divisors if d <= limit)
    return int(best if best >= limit // 4 else limit)


def _allocate(f, name, n, width, dtype, fill, chunk_size):
    """A resizable dataset allocated (and filled) at once, so later writes are raw data only."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    shape, maxshape = ((n, width), (None, width)) if width else ((n,), (None,))
    chunks = (_h5_chunk_rows(chunk_size, width),) + shape[1:]
    f.create_dataset(name, shape=shape, maxshape=maxshape, dtype=dtype, chunks=chunks,
                     fillvalue=fill, dcpl=dcpl)


def _str_array(values):
    return np.array([str(v) for v in values], dtype=h5py.string_dtype())


def _as_str_list(value):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(value)]


def _set_attr(f, name, value):
    if isinstance(value, (dict, tuple)) or (isinstance(value, list) and not
                                            all(isinstance(v, str) for v in value)):
        value = json.dumps(value, default=repr)
    if isinstance(value, list):
        f.attrs[name] = _str_array(value or [""])
    elif isinstance(value, str) and len(value.encode()) > 32768:
        if name in f.attrs:
            del f.attrs[name]
        key = "provenance/" + name
        if key in f:
            del f[key]
        f.create_dataset(key, data=value, dtype=h5py.string_dtype())
    elif value is None:
        f.attrs[name] = ""
    else:
        f.attrs[name] = value


def _checksum(arrays):
    crc = 0
    for arr in arrays:
        crc = zlib.crc32(np.ascontiguousarray(arr).view(np.uint8).reshape(-1), crc)
    return np.uint32(crc)


def _default_mode(tmp):
    """Give a temporary file (0600 from mkstemp) the mode a new file would get."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def _move_into_place(tmp, path, overwrite):
    _default_mode(tmp)
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)          # atomic, and fails if path exists
    except FileExistsError:
        raise StoreError(f"simulation file {path} already exists; pass --resume to "
                         "continue it or --overwrite to replace it") from None
    except OSError:                 # no hard links on this file system
        if os.path.exists(path):
            raise StoreError(f"simulation file {path} already exists; pass --resume "
                             "to continue it or --overwrite to replace it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _unlink_quietly(path):
    try:
        Path(path).unlink()
    except OSError:
        pass
