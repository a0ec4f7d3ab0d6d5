"""Real ``mpiexec -n 2`` / ``-n 3`` runs of fits: status, output, worker failures, clean shutdown.

Uses the venv's own ``mpiexec`` (pip mpich) and the toy parameter file in
this folder, whose likelihood costs microseconds, so each run takes seconds.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TOY = HERE / "toy_params.py"
BAD = HERE / "bad_worker_params.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
QUICK = ["--nlive_init", "40", "--nested_dlogz_init", "1.0", "--nested_maxbatch", "0",
         "--nested_sample", "unif", "--quiet"]

pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec in the venv")]


def mpirun(n, args, cwd, timeout=180):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}
    return subprocess.run([str(MPIEXEC), "-n", str(n), sys.executable, *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _read(path):
    from prospect.io.read_results import results_from
    return results_from(str(path), dangerous=False)


@pytest.mark.parametrize("n", [2, 3])
def test_dynesty_under_mpiexec(tmp_path, n):
    proc = mpirun(n, [TOY, "--dynesty", *QUICK, "--outfile", f"n{n}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == f"n{n}_dynesty.h5"
    res, obs, _ = _read(tmp_path / f"n{n}_dynesty.h5")
    assert res["chain"].shape[1] == 2 and res["weights"].sum() == pytest.approx(1.0)
    assert res["stellar_mass"].shape == res["weights"].shape
    assert res["prospect_sim_pool"] == {"kind": "mpi", "size": n - 1}


def test_emcee_under_mpiexec(tmp_path):
    proc = mpirun(3, [TOY, "--emcee", "--nwalkers", "8", "--niter", "20", "--nburn", "8",
                      "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res, _, _ = _read(tmp_path / "toy_params_emcee.h5")
    assert res["chain"].shape == (8, 20, 2)


@pytest.mark.parametrize("fail_at, message", [
    ("build", "MPI rank 1 failed to build its ingredients: bad_worker_params.py: "
              "build_model(**run_params) raised RuntimeError: model cannot be built on rank 1"),
    ("predict", "a worker (MPI rank) failed: RuntimeError: sps exploded on rank"),
])
def test_worker_exception_aborts_every_rank(tmp_path, fail_at, message):
    """One line on stderr, from the master, however many workers failed; the workers'
    tracebacks (dynesty prints one per failing call) only with --traceback."""
    proc = mpirun(3, [BAD, "--dynesty", *QUICK, "--fail_at", fail_at], tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("prospect_sim: error: ") and message in lines[0], lines
    assert not proc.stdout.strip(), proc.stdout
    assert not list(tmp_path.iterdir())          # nothing written
    if fail_at == "predict":
        proc = mpirun(3, [BAD, "--dynesty", *QUICK, "--fail_at", fail_at, "--traceback"],
                      tmp_path, timeout=120)
        assert proc.returncode == 2
        assert "the worker's traceback:" in proc.stderr
        assert 'raise RuntimeError(f"sps exploded on rank {RANK}")' in proc.stderr


def test_bad_input_under_mpiexec_reports_once(tmp_path):
    (tmp_path / "toy_params_dynesty.h5").write_text("keep me")
    proc = mpirun(3, [TOY, "--dynesty"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "prospect_sim: error: output toy_params_dynesty.h5 already exists; pass --overwrite "
        "to replace it or --resume to continue it, or choose another --outfile"]
    assert (tmp_path / "toy_params_dynesty.h5").read_text() == "keep me"


@pytest.mark.slow
def test_shutdown_is_clean_in_repeated_runs(tmp_path):
    """schwimmbad's MPIPool exits with status 9 in about half of the runs under
    this MPICH unless its workers are cleared after closing; 10 runs in a row."""
    statuses = []
    for i in range(10):
        proc = mpirun(3, [TOY, "--optimize", "--quiet", "--outfile", f"r{i}"], tmp_path)
        statuses.append(proc.returncode)
    assert statuses == [0] * 10, statuses
