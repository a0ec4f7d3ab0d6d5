"""``mpiexec -n 3`` (master + 2 worker ranks) writes the same datasets as a serial run."""

import subprocess
import sys
from pathlib import Path

import h5py
import pytest

pytestmark = pytest.mark.mpi

MPIEXEC = Path(sys.executable).parent / "mpiexec"
TOY = Path(__file__).parents[1] / "integration" / "simulate_toy_params.py"
DATASETS = ["theta", "phot", "valid", "chunks_done", "extras/mfrac", "extras/stellar_mass",
            "extras/sfr100", "extras/mwa"]


def _run(cmd):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not MPIEXEC.exists(), reason="the venv has no mpiexec")
def test_mpiexec_matches_serial_and_resumes(tmp_path):
    args = ["--simulate", "--n_samples", 6000, "--chunk_size", 700]
    serial, mpi = tmp_path / "serial.h5", tmp_path / "mpi.h5"
    proc = _run([sys.executable, TOY, *args, "--simfile", serial, "--quiet"])
    assert proc.returncode == 0, proc.stderr
    proc = _run([MPIEXEC, "-n", 3, sys.executable, TOY, "--simulate", "--n_samples", 3000,
                 "--chunk_size", 700, "--simfile", mpi])
    assert proc.returncode == 0, proc.stderr
    assert "2 workers" in proc.stderr, proc.stderr          # master + 2 worker ranks
    # extend under MPI too: the result is the 6000-row serial file
    proc = _run([MPIEXEC, "-n", 3, sys.executable, TOY, *args, "--simfile", mpi, "--resume",
                 "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(mpi)
    with h5py.File(serial, "r") as a, h5py.File(mpi, "r") as b:
        for key in DATASETS:
            assert a[key][()].tobytes() == b[key][()].tobytes(), key
