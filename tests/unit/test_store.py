"""The simulation file: layout, never clobbering, chunks, growth, integrity."""

import json
import os

import h5py
import numpy as np
import pytest

from prospect_sim.errors import ProspectSimError, StoreError
from prospect_sim.store import SCHEMA_VERSION, SimulationStore, n_chunks

LABELS = ["zred", "mass", "tage"]
FILTERS = ["decam_g", "decam_r"]
EXTRAS = ["mfrac", "stellar_mass"]


def _create(path, n_samples=10, chunk_size=4, **kw):
    return SimulationStore.create(path, theta_labels=LABELS, filter_names=FILTERS,
                                  extras=EXTRAS, n_samples=n_samples,
                                  chunk_size=chunk_size, seed=7, **kw)


def _chunk(store, k, value=None):
    rows = store.chunk_rows(k)
    n = rows.stop - rows.start
    base = np.arange(rows.start, rows.stop, dtype=float)[:, None] if value is None else value
    theta = base + np.zeros((n, len(LABELS)))
    phot = base + np.ones((n, len(FILTERS)))
    extras = {name: np.full(n, 0.5) for name in EXTRAS}
    return theta, phot, extras, np.ones(n, bool)


def test_n_chunks():
    assert n_chunks(10, 4) == 3
    assert n_chunks(8, 4) == 2
    assert n_chunks(1, 100) == 1


def test_create_layout_and_attributes_round_trip(tmp_path):
    path = tmp_path / "s.h5"
    attrs = {"design": "random", "prior": json.dumps({"zred": {"bounds": [0, 1]}}),
             "run_params": {"n_samples": 10, "flag": None}, "libs": ["a", "b"],
             "long_text": "x" * 100_000, "count": 3}
    with _create(path, attrs=attrs) as store:
        assert store.n_samples == 10 and store.chunk_size == 4 and store.n_chunks == 3
        assert store.missing_chunks() == [0, 1, 2]
        assert store.n_done == 0
    with h5py.File(path, "r") as f:        # plain h5py, no prospect_sim
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        assert list(f.attrs["theta_labels"]) == LABELS
        assert list(f.attrs["filter_names"]) == FILTERS
        assert f["theta"].shape == (10, 3) and f["phot"].shape == (10, 2)
        assert f["valid"].dtype == bool and not f["valid"][()].any()
        assert f["chunks_done"].shape == (3,)
        assert np.isnan(f["theta"][()]).all()
        assert f["theta"].maxshape == (None, 3)
        assert json.loads(f.attrs["run_params"]) == {"n_samples": 10, "flag": None}
        assert f.attrs["count"] == 3
    store = SimulationStore(path)
    assert store.read_only
    assert store.theta_labels == LABELS and store.filter_names == FILTERS
    assert store.extras == EXTRAS
    assert store.prior == {"zred": {"bounds": [0, 1]}}
    assert store.text_attr("long_text") == "x" * 100_000
    assert store.text_attr("design") == "random"
    store.close()


def test_never_clobbers(tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(b"precious")
    with pytest.raises(StoreError, match="already exists"):
        _create(path)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]      # no temporary left
    _create(path, overwrite=True).close()
    assert SimulationStore(path).n_samples == 10


def test_write_chunks_out_of_order(tmp_path):
    path = tmp_path / "s.h5"
    with _create(path) as store:
        for k in (2, 0):
            store.write_chunk(k, *_chunk(store, k))
        assert store.missing_chunks() == [1]
        assert store.n_done == 4 + 2
        report = store.verify()
        assert report == {"chunks_done": 2, "rows_done": 6, "invalid": 0, "bad_chunks": []}
    with h5py.File(path, "r") as f:
        theta = f["theta"][()]
        assert np.array_equal(theta[:4, 0], np.arange(4.0))
        assert np.isnan(theta[4:8]).all()
        assert np.array_equal(theta[8:, 0], [8.0, 9.0])
        assert f["chunks_done"][()].tolist() == [True, False, True]


def test_write_rejects_wrong_shapes_and_ids(tmp_path):
    with _create(tmp_path / "s.h5") as store:
        theta, phot, extras, valid = _chunk(store, 0)
        with pytest.raises(StoreError, match="shape"):
            store.write_chunk(0, theta[:3], phot, extras, valid)
        with pytest.raises(StoreError, match="outside"):
            store.write_chunk(3, theta, phot, extras, valid)
        assert store.missing_chunks() == [0, 1, 2]


def test_read_only_guard(tmp_path):
    path = tmp_path / "s.h5"
    _create(path).close()
    with SimulationStore(path) as store:
        with pytest.raises(StoreError, match="read-only"):
            store.write_chunk(0, *_chunk(store, 0))
        with pytest.raises(StoreError, match="read-only"):
            store.grow(20)


def test_grow_reopens_partial_last_chunk(tmp_path):
    path = tmp_path / "s.h5"
    with _create(path) as store:
        for k in range(3):
            store.write_chunk(k, *_chunk(store, k))
        assert store.missing_chunks() == []
        store.grow(17)
        assert store.n_samples == 17 and store.n_chunks == 5
        # chunk 2 held 2 rows of 4: it must be completed, like chunks 3 and 4
        assert store.missing_chunks() == [2, 3, 4]
        assert store.file["theta"].shape == (17, 3)
        with pytest.raises(StoreError, match="shrink"):
            store.grow(5)


def test_grow_keeps_full_chunks(tmp_path):
    with _create(tmp_path / "s.h5", n_samples=8) as store:
        for k in range(2):
            store.write_chunk(k, *_chunk(store, k))
        store.grow(12)
        assert store.missing_chunks() == [2]


def test_verify_detects_corruption(tmp_path):
    path = tmp_path / "s.h5"
    with _create(path) as store:
        for k in range(3):
            store.write_chunk(k, *_chunk(store, k))
    with h5py.File(path, "r+") as f:        # flip data behind the store's back
        f["phot"][5, 1] = 123.0
    with SimulationStore(path) as store:
        with pytest.raises(StoreError, match="chunk.s. 1 fail their checksum"):
            store.verify()
    with SimulationStore(path, "r+") as store:
        assert store.verify(repair=True)["bad_chunks"] == [1]
        assert store.missing_chunks() == [1]


def test_invalid_rows_counted(tmp_path):
    with _create(tmp_path / "s.h5") as store:
        theta, phot, extras, valid = _chunk(store, 0)
        valid[[1, 3]] = False
        store.write_chunk(0, theta, phot, extras, valid)
        assert store.verify()["invalid"] == 2


@pytest.mark.parametrize("content", [b"", b"not an hdf5 file at all" * 10])
def test_truncated_or_foreign_file(tmp_path, content):
    path = tmp_path / "s.h5"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="truncated or is not an HDF5 file"):
        SimulationStore(path)


def test_truncated_hdf5(tmp_path):
    path = tmp_path / "s.h5"
    with _create(path, n_samples=1000, chunk_size=100) as store:
        store.write_chunk(0, *_chunk(store, 0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(StoreError):
        with SimulationStore(path) as store:
            store.verify()


def test_other_hdf5_file_or_schema(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not a prospect_sim simulation file"):
        SimulationStore(path)
    path = tmp_path / "s.h5"
    _create(path).close()
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema_version 99"):
        SimulationStore(path)


def test_missing_file_and_unwritable_folder(tmp_path, monkeypatch):
    """Works as root (as in CI), where permissions do not stop a write: a file in the way
    of the folder, and the folder's PermissionError emulated where the file is made."""
    with pytest.raises(StoreError, match="does not exist"):
        SimulationStore(tmp_path / "nope.h5")
    with pytest.raises(StoreError, match="no such folder"):
        _create(tmp_path / "no_such_dir" / "s.h5")
    (tmp_path / "a_file").write_text("in the way")
    with pytest.raises(StoreError, match="no such folder"):
        _create(tmp_path / "a_file" / "s.h5")
    import tempfile

    def refused(*args, dir=None, **kw):
        raise PermissionError(13, "Permission denied", dir)

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(StoreError, match=r"Permission denied.*the folder is not writable"):
        _create(tmp_path / "s.h5")
    assert os.listdir(tmp_path) == ["a_file"]


def test_open_while_being_written(tmp_path):
    """HDF5 file locking: a second process cannot open a file that is being written,
    and is told why."""
    import subprocess
    import sys
    path = tmp_path / "s.h5"
    code = ("import sys\nfrom prospect_sim.store import SimulationStore\n"
            "from prospect_sim.errors import StoreError\n"
            "try:\n    SimulationStore(sys.argv[1], 'r+')\n"
            "except StoreError as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}
    with _create(path):
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                             text=True, timeout=60, env=env)
    assert "it is open for writing by another process" in out.stdout, out.stdout + out.stderr
    # once it is closed, the second process opens it
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 0 and not out.stdout, out.stdout + out.stderr


def test_bad_sizes(tmp_path):
    with pytest.raises(StoreError, match="positive"):
        _create(tmp_path / "s.h5", n_samples=0)
    with pytest.raises(StoreError, match="positive"):
        _create(tmp_path / "s.h5", chunk_size=-1)
    assert not (tmp_path / "s.h5").exists()


def test_readable_with_astropy_and_pandas(tmp_path):
    path = tmp_path / "s.h5"
    with _create(path, n_samples=8) as store:
        for k in range(2):
            store.write_chunk(k, *_chunk(store, k))
    pd = pytest.importorskip("pandas")
    from astropy.table import Table
    with h5py.File(path, "r") as f:
        df = pd.DataFrame(f["theta"][()], columns=list(f.attrs["theta_labels"].astype(str)))
        assert df["zred"].tolist() == list(np.arange(8.0))
    table = Table.read(path, path="phot")
    assert len(table) == 8


def test_scan_chunks_reads_every_chunk_and_checks_the_done_ones(tmp_path):
    from prospect_sim.store import scan_chunks
    path = tmp_path / "s.h5"
    with _create(path) as store:
        for k in (0, 2):
            store.write_chunk(k, *_chunk(store, k))
    with h5py.File(path, "r+") as f:
        f["extras/stellar_mass"][9] = 1.0           # chunk 2's last row
    with h5py.File(path, "r") as f:
        seen = list(scan_chunks(f))
    assert [(k, r, done, ok) for k, r, done, ok, _ in seen] == [
        (0, slice(0, 4), True, True), (1, slice(4, 8), False, None),
        (2, slice(8, 10), True, False)]
    arrays = seen[0][4]
    assert sorted(arrays) == ["extras/mfrac", "extras/stellar_mass", "phot", "theta", "valid"]
    np.testing.assert_array_equal(arrays["theta"][:, 0], [0, 1, 2, 3])
    with SimulationStore(path) as store:            # verify agrees
        with pytest.raises(StoreError, match=r"chunk\(s\) 2 fail"):
            store.verify()
