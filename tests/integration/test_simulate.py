"""``--simulate`` end to end on a toy parameter file: determinism, resume, bad input.

The toy file (``simulate_toy_params.py``) has the demo's model and an
analytic sps, so these tests exercise chunks, pool, store and resume in
seconds. The real demo model is in ``test_simulate_demo.py``.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import stats

from prospect_sim import cli, info

TOY = Path(__file__).with_name("simulate_toy_params.py")
DATASETS = ["theta", "phot", "valid", "chunks_done", "extras/mfrac", "extras/stellar_mass",
            "extras/sfr100", "extras/mwa"]
BOUNDS = {"zred": (0.05, 1.5), "mass": (1e8, 1e12), "logzsol": (-1.5, 0.19),
          "dust2": (0.0, 2.0), "tage": (0.1, 13.0), "tau": (0.1, 10.0)}


def simulate(path, *args):
    """Run the toy file in this process (serial); returns the exit status and the path."""
    argv = ["--simulate", "--quiet", "--simfile", str(path)] + [str(a) for a in args]
    try:
        return 0, cli.main(argv=argv, paramfile=str(TOY))
    except SystemExit as exit_:
        return exit_.code, None


def simulate_process(path, *args, **kwargs):
    """Run the toy file as a program (``python toy.py --simulate ...``)."""
    cmd = [sys.executable, str(TOY), "--simulate", "--simfile", str(path)] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)


def datasets(path):
    with h5py.File(path, "r") as f:
        return {key: f[key][()] for key in DATASETS}


def assert_same_data(a, b):
    da, db = datasets(a), datasets(b)
    for key in DATASETS:
        assert da[key].dtype == db[key].dtype, key
        assert da[key].tobytes() == db[key].tobytes(), key


def test_contents_attributes_and_prior(tmp_path, capsys):
    path = tmp_path / "sims.h5"
    status, out = simulate(path, "--n_samples", 6000, "--chunk_size", 1000, "--seed", 3)
    assert status == 0 and out == str(path)
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(path)
    with h5py.File(path, "r") as f:
        a = f.attrs
        labels = list(a["theta_labels"])
        assert labels == list(BOUNDS)
        assert list(a["filter_names"]) == ["decam_g", "decam_r", "decam_i"]
        sizes = (a["schema_version"], a["n_samples"], a["chunk_size"], a["seed"])
        assert sizes == (1, 6000, 1000, 3)
        prior = json.loads(a["prior"])
        assert prior["mass"] == {"distribution": "LogUniform",
                                 "params": {"mini": 1e8, "maxi": 1e12}, "bounds": [1e8, 1e12]}
        assert a["param_file_text"] == TOY.read_text()
        assert json.loads(a["run_params"])["n_samples"] == 6000
        assert "numpy" in json.loads(a["versions"])
        assert a["sps"] == "ToySPS" and a["forward_path"] == "fast" and a["design"] == "random"
        assert a["created"] and a["finished"]
        assert json.loads(a["model_config"])["params"]["sfh"]["init"] == 4
        theta, valid = f["theta"][()], f["valid"][()]
        assert valid.all() and f["chunks_done"][()].all()
        assert f["phot"].shape == (6000, 3) and np.isfinite(f["phot"][()]).all()
        np.testing.assert_allclose(f["extras/stellar_mass"][()], theta[:, 1] * 0.7)
    for j, (name, (lo, hi)) in enumerate(BOUNDS.items()):
        assert (theta[:, j] >= lo).all() and (theta[:, j] <= hi).all(), name
    # marginals: KS against the prior, p > 1e-3 (seeded, so the outcome is fixed;
    # a correct sampler fails one of these six with probability ~6e-3 per seed)
    for name, (lo, hi) in BOUNDS.items():
        dist = (stats.loguniform(lo, hi) if name in ("mass", "tau")
                else stats.uniform(lo, hi - lo))
        assert stats.kstest(theta[:, labels.index(name)], dist.cdf).pvalue > 1e-3, name
    text = info.describe(path)
    assert "integrity: OK" in text and "6,000 of 6,000 done" in text and "0 rows" in text


def test_workers_give_the_same_bytes_as_serial(tmp_path):
    serial, workers = tmp_path / "serial.h5", tmp_path / "workers.h5"
    assert simulate(serial, "--n_samples", 5000, "--chunk_size", 700)[0] == 0
    proc = simulate_process(workers, "--n_samples", 5000, "--chunk_size", 700, "--workers", 2)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(workers)
    assert "2 workers" in proc.stderr and "invalid" in proc.stderr      # summary
    assert "simulate: 100%" in proc.stderr                               # progress bar
    assert_same_data(serial, workers)
    with SimulationFiles(serial, workers) as (a, b):
        assert info.content_digest(a) == info.content_digest(b)


class SimulationFiles:
    """Open several simulation files read-only."""

    def __init__(self, *paths):
        from prospect_sim.store import SimulationStore
        self.stores = [SimulationStore(p) for p in paths]

    def __enter__(self):
        return self.stores

    def __exit__(self, *exc):
        for s in self.stores:
            s.close()


def _done(path):
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f["chunks_done"][()].sum())
    except (OSError, KeyError):
        return 0


@pytest.mark.parametrize("sig,workers", [(signal.SIGKILL, 1), (signal.SIGINT, 2)],
                         ids=["SIGKILL-serial", "SIGINT-workers"])
def test_interrupt_then_resume_equals_uninterrupted(tmp_path, sig, workers):
    # 64 chunks of 0.25 s: after the 3rd is done, seconds of work remain even
    # on a loaded machine, so the signal always lands mid-run
    args = ["--n_samples", 16000, "--chunk_size", 250]
    reference = tmp_path / "reference.h5"
    assert simulate(reference, *args)[0] == 0

    path = tmp_path / "killed.h5"
    cmd = [sys.executable, str(TOY), "--simulate", "--quiet", "--simfile", str(path),
           "--toy_delay", "0.25", "--workers", str(workers)] + [str(a) for a in args]
    # a shell's background job ignores SIGINT and its children inherit that
    # (CI may run so): give the run Python's usual Ctrl-C handling
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while _done(path) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "--resume" in err
    done = _done(path)
    assert 3 <= done < 64
    with SimulationFiles(path) as (store,):
        assert store.verify()["chunks_done"] == done          # every completed chunk intact

    status, _ = simulate(path, *args)                          # no --resume: refused
    assert status == 2
    assert simulate(path, *args, "--resume")[0] == 0
    assert_same_data(reference, path)


def _children(pid):
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _running(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"      # a zombie has ended


@contextlib.contextmanager
def _two_worker_run(path, delay, *args):
    """A toy ``--simulate --workers 2`` with ``delay`` s chunks, yielded once 2 chunks
    are written, with its worker pids; killed on the way out if still running."""
    cmd = [sys.executable, str(TOY), "--simulate", "--simfile", str(path), "--toy_delay",
           str(delay), "--workers", "2"] + [str(a) for a in args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while _done(path) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert proc.poll() is None and len(workers) == 2, workers
        yield proc, workers
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux parent-death signal")
def test_workers_end_quietly_when_the_master_is_killed(tmp_path):
    args = ["--quiet", "--n_samples", 16000, "--chunk_size", 250]
    with _two_worker_run(tmp_path / "killed.h5", 2.0, *args) as (proc, workers):
        proc.kill()                                   # SIGKILL: no handler in the master runs
        started = time.time()
        _, err = proc.communicate(timeout=60)         # EOF once the workers have closed stderr
    while any(_running(w) for w in workers) and time.time() < started + 10:
        time.sleep(0.05)
    assert not any(_running(w) for w in workers)
    # they end on the kernel's signal, not on a broken pipe after their 2 s chunk
    assert time.time() - started < 1.5
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_worker_stops_the_run_with_its_chunks_kept(tmp_path):
    # multiprocessing alone would wait for ever for the chunk the dead worker held
    path = tmp_path / "worker_killed.h5"
    args = ["--n_samples", 8000, "--chunk_size", 250]
    with _two_worker_run(path, 0.5, *args) as (proc, workers):
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("prospect_sim: error: local worker process") and "SIGKILL" in last
    assert "--resume" in err and "Traceback" not in err
    done = _done(path)
    assert 2 <= done < 32
    with SimulationFiles(path) as (store,):
        assert store.verify()["chunks_done"] == done
    assert simulate(path, *args, "--resume")[0] == 0
    assert _done(path) == 32


def test_extending_equals_a_run_at_the_final_size(tmp_path):
    direct, grown = tmp_path / "direct.h5", tmp_path / "grown.h5"
    assert simulate(direct, "--n_samples", 5300, "--chunk_size", 1000)[0] == 0
    assert simulate(grown, "--n_samples", 2500, "--chunk_size", 1000)[0] == 0
    assert simulate(grown, "--n_samples", 5300, "--chunk_size", 1000, "--resume")[0] == 0
    assert_same_data(direct, grown)
    # resuming a finished file computes nothing and changes nothing
    before = datasets(grown)
    assert simulate(grown, "--n_samples", 5300, "--chunk_size", 1000, "--resume")[0] == 0
    assert all(before[k].tobytes() == v.tobytes() for k, v in datasets(grown).items())


def test_resume_without_chunk_size_keeps_the_files_own(tmp_path):
    # a file made with another chunk size (an older default, say) resumes as it was made
    direct, grown = tmp_path / "direct.h5", tmp_path / "grown.h5"
    assert simulate(direct, "--n_samples", 2600, "--chunk_size", 700)[0] == 0
    assert simulate(grown, "--n_samples", 1400, "--chunk_size", 700)[0] == 0
    assert simulate(grown, "--n_samples", 2600, "--resume")[0] == 0
    assert_same_data(direct, grown)
    with SimulationFiles(grown) as (store,):
        assert store.chunk_size == 700


@pytest.mark.parametrize("design", ["sobol", "lhs"])
def test_quasi_random_designs_are_reproducible_per_chunk(tmp_path, design):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert simulate(a, "--n_samples", 2048, "--chunk_size", 1024, "--design", design)[0] == 0
    assert simulate(b, "--n_samples", 1024, "--chunk_size", 1024, "--design", design)[0] == 0
    assert simulate(b, "--n_samples", 2048, "--chunk_size", 1024, "--design", design,
                    "--resume")[0] == 0
    assert_same_data(a, b)
    with h5py.File(a, "r") as f:
        assert f.attrs["design"] == design
        zred = f["theta"][:1024, 0]
    # each of 1024 equal strata of the zred prior holds exactly one point of chunk 0
    # (Latin hypercube by construction; a scrambled Sobol' net of 2**10 points too)
    lo, hi = BOUNDS["zred"]
    strata = np.floor((zred - lo) / (hi - lo) * 1024).astype(int)
    assert sorted(strata) == list(range(1024))


def test_non_finite_photometry_is_flagged_not_valid(tmp_path, caplog):
    path = tmp_path / "sims.h5"
    assert simulate(path, "--n_samples", 3000, "--chunk_size", 1000, "--toy_nan_above", 10)[0] == 0
    with h5py.File(path, "r") as f:
        tage, valid, phot = f["theta"][:, 4], f["valid"][()], f["phot"][()]
    np.testing.assert_array_equal(valid, tage <= 10)
    assert np.isfinite(phot[valid]).all() and not np.isfinite(phot[~valid]).all(axis=1).any()
    n_bad = int((~valid).sum())
    assert 0 < n_bad < 3000
    assert f"invalid:   {n_bad:,} rows" in info.describe(path)


def test_resume_refuses_a_different_run(tmp_path, capsys):
    path = tmp_path / "sims.h5"
    assert simulate(path, "--n_samples", 2000, "--chunk_size", 500)[0] == 0
    before = datasets(path)
    cases = {("--seed", 1): "seed (file: 0, now: 1)",
             ("--chunk_size", 400): "chunk_size (file: 500, now: 400)",
             ("--design", "lhs"): "design (file: random, now: lhs)"}
    for extra, expected in cases.items():
        capsys.readouterr()
        status, _ = simulate(path, "--n_samples", 2000, "--chunk_size", 500, "--resume", *extra)
        assert status == 2
        err = capsys.readouterr().err
        assert expected in err and "cannot --resume" in err, err
    # a different parameter file (same model, edited text)
    edited = tmp_path / "edited_params.py"
    edited.write_text(TOY.read_text() + "\n# edited\n")
    argv = ["--simulate", "--quiet", "--simfile", str(path), "--n_samples", "2000",
            "--chunk_size", "500", "--resume"]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv=argv, paramfile=str(edited))
    assert exit_.value.code == 2
    assert "parameter file text" in capsys.readouterr().err
    assert all(before[k].tobytes() == v.tobytes() for k, v in datasets(path).items())


def test_existing_output_and_bad_sizes(tmp_path, capsys):
    path = tmp_path / "sims.h5"
    assert simulate(path, "--n_samples", 500, "--chunk_size", 100)[0] == 0
    before = datasets(path)
    assert simulate(path, "--n_samples", 500)[0] == 2
    assert "already exists" in capsys.readouterr().err
    for bad in ("0", "-5", "1.5", "many"):
        assert simulate(tmp_path / "new.h5", "--n_samples", bad)[0] == 2
    assert simulate(tmp_path / "new.h5", "--n_samples", 100, "--chunk_size", 0)[0] == 2
    assert "--chunk_size must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "new.h5").exists()
    assert simulate(path, "--n_samples", 400, "--chunk_size", 100, "--resume")[0] == 2
    assert "would shrink it" in capsys.readouterr().err
    assert simulate(tmp_path / "missing_dir" / "s.h5", "--n_samples", 10)[0] == 2
    assert all(before[k].tobytes() == v.tobytes() for k, v in datasets(path).items())
    # --overwrite replaces it
    assert simulate(path, "--n_samples", 300, "--chunk_size", 100, "--overwrite")[0] == 0
    assert datasets(path)["theta"].shape == (300, 6)


def test_corrupt_or_truncated_file_gives_one_clear_error(tmp_path, capsys):
    path = tmp_path / "sims.h5"
    assert simulate(path, "--n_samples", 2000, "--chunk_size", 500)[0] == 0
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert simulate(path, "--n_samples", 2000, "--chunk_size", 500, "--resume")[0] == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err, err


@pytest.mark.skipif(sys.platform != "linux", reason="uses RLIMIT_FSIZE and SIGXFSZ")
def test_full_disk_keeps_completed_chunks(tmp_path):
    """A file-size limit stands in for a full disk (both fail the write with an errno)."""
    import resource
    path = tmp_path / "sims.h5"
    assert simulate(path, "--n_samples", 3000, "--chunk_size", 1000)[0] == 0
    before = datasets(path)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))

    proc = simulate_process(path, "--n_samples", 300_000, "--chunk_size", 1000, "--resume",
                            "--quiet", preexec_fn=limit)
    assert proc.returncode == 2, proc.stderr
    assert "disk is full" in proc.stderr and proc.stderr.count("\n") == 1
    assert all(before[k].tobytes() == v.tobytes() for k, v in datasets(path).items())
    proc = simulate_process(tmp_path / "new.h5", "--n_samples", 300_000, "--quiet",
                            preexec_fn=limit)
    assert proc.returncode == 2 and "disk is full" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sims.h5"]


def test_more_workers_than_chunks_are_cut_with_a_warning(tmp_path):
    """--workers 40 for 2 chunks forks 2 processes (not 40), says so once, same file."""
    proc = simulate_process(tmp_path / "many.h5", "--n_samples", 2000, "--chunk_size", 1000,
                            "--workers", 40)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("--workers 40: this run has 2 tasks; using 2 worker") == 1
    assert "(2 workers)" in proc.stderr
    serial = simulate_process(tmp_path / "one.h5", "--n_samples", 2000, "--chunk_size", 1000)
    assert serial.returncode == 0, serial.stderr[-2000:]
    assert_same_data(tmp_path / "many.h5", tmp_path / "one.h5")
