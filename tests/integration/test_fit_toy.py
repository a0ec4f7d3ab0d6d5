"""Fits of the toy parameter file end to end: every fitter, resume, restart, derived quantities.

The toy likelihood costs microseconds, so these check the driver's behaviour
(outputs, Prospector's reader, dynesty checkpoints, emcee restarts) in seconds.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TOY = Path(__file__).resolve().parents[1] / "mpi" / "toy_params.py"
QUICK = ["--nlive_init", "40", "--nested_dlogz_init", "1.0", "--nested_maxbatch", "0",
         "--nested_sample", "unif", "--quiet"]


def _env():
    return {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}


def _run(args, cwd, timeout=180):
    return subprocess.run([sys.executable, str(TOY), *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _read(path):
    from prospect.io.read_results import results_from
    return results_from(str(path), dangerous=False)


def test_dynesty_results_read_back_with_derived_quantities(tmp_path):
    proc = _run(["--dynesty", *QUICK, "--seed", "3"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "toy_params_dynesty.h5"
    res, obs, model = _read(tmp_path / "toy_params_dynesty.h5")
    chain, w = res["chain"], res["weights"]
    assert chain.shape[1] == 2 and w.sum() == pytest.approx(1.0)
    assert res["theta_labels"] == ["mass", "slope"] and model is None     # dangerous=False
    assert [p["name"] for p in res["model_params"]] == ["mass", "slope"]
    np.testing.assert_allclose(obs["maggies"], 2e10 * 1e-12 * (np.array([4770., 6231., 7625.]) / 6000.) ** 0.5)
    # truth mass 2e10, slope 0.5, 5% errors: posterior means within ~4 sigma of a loose fit
    mean = np.average(chain, weights=w, axis=0)
    assert abs(np.log10(mean[0] / 2e10)) < 0.1 and abs(mean[1] - 0.5) < 0.3
    # surviving mass = formed mass * mfrac, mfrac = 1 - 0.1 slope^2 for this toy
    np.testing.assert_allclose(res["mfrac"], 1 - 0.1 * chain[:, 1] ** 2)
    np.testing.assert_allclose(res["stellar_mass"], chain[:, 0] * res["mfrac"])
    assert res["run_params"]["sps_library"] == "grid" and res["run_params"]["param_file"] == str(TOY)
    assert "bestfit" in res and res["bestfit"]["photometry"].shape == (3,)
    assert not (tmp_path / "toy_params_dynesty_checkpoint.pkl").exists()


def test_emcee_and_restart_from(tmp_path):
    proc = _run(["--emcee", "--nwalkers", "8", "--niter", "12", "--nburn", "8", "--quiet"],
                tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, _, _ = _read(tmp_path / "toy_params_emcee.h5")
    assert first["chain"].shape == (8, 12, 2) and first["stellar_mass"].shape == (8, 12)
    proc = _run(["--emcee", "--restart_from", "toy_params_emcee.h5", "--niter", "6",
                 "--outfile", "more", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    more, _, _ = _read(tmp_path / "more_emcee.h5")
    assert more["chain"].shape == (8, 6, 2)
    # the restarted walkers start from where the first run ended
    step = np.abs(more["chain"][:, 0] - first["chain"][:, -1]).max(axis=0)
    spread = first["chain"][:, -1].std(axis=0)
    assert np.all(step <= 5 * spread + 1e-12)


def test_emcee_shows_a_progress_bar_unless_quiet(tmp_path):
    args = ["--emcee", "--nwalkers", "8", "--niter", "12", "--nburn", "8"]
    loud = _run(args, tmp_path)
    assert loud.returncode == 0, loud.stderr[-2000:]
    bars = [ln for ln in loud.stderr.replace("\r", "\n").splitlines() if ln.startswith("emcee:")]
    # one bar per burn-in round and one for production (tqdm may skip the final count)
    assert any("/8 " in ln for ln in bars) and any("/12 " in ln for ln in bars), loud.stderr[-500:]
    quiet = _run(args + ["--quiet", "--overwrite"], tmp_path)
    assert quiet.returncode == 0 and "emcee:" not in quiet.stderr


def test_restart_from_a_dynesty_file_is_refused(tmp_path):
    assert _run(["--dynesty", *QUICK], tmp_path).returncode == 0
    proc = _run(["--emcee", "--restart_from", "toy_params_dynesty.h5", "--quiet"], tmp_path)
    assert proc.returncode == 2
    assert "expected an emcee chain (nwalkers, niter, 2)" in proc.stderr.strip().splitlines()[-1]


def test_optimize_then_emcee_keeps_optimizer_results(tmp_path):
    proc = _run(["--optimize", "--emcee", "--nwalkers", "8", "--niter", "8", "--nburn", "4",
                 "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res, _, _ = _read(tmp_path / "toy_params_emcee.h5")
    opt = res["optimization"]["optimizer_results"]
    assert opt["success"].all() and opt["x"].shape == (1, 2)
    np.testing.assert_allclose(opt["x"][0], [2e10, 0.5], rtol=1e-3)


# Runs the toy file with a full disk from the Nth write of the output's kind on:
# os.replace (the rename of the finished file) or h5py.File (its writing) fails.
_FULL_DISK = """
import errno, os, runpy, sys
import h5py
where, suffix, path = sys.argv[1], sys.argv[2], sys.argv[3]
def enospc():
    raise OSError(errno.ENOSPC, "No space left on device")
if where == "replace":
    real = os.replace
    def replace(src, dst, *a, **kw):
        if str(dst).endswith(suffix):
            enospc()
        return real(src, dst, *a, **kw)
    os.replace = replace
else:
    real = h5py.File.__init__
    def init(self, name, *a, **kw):
        if ".tmp" in str(name):
            enospc()
        return real(self, name, *a, **kw)
    h5py.File.__init__ = init
sys.argv = [path] + sys.argv[4:]
runpy.run_path(path, run_name="__main__")
"""


@pytest.mark.parametrize("where", ["replace", "write"])
def test_optimize_into_a_full_disk_is_one_line(tmp_path, where):
    """ENOSPC at the final write or rename of --optimize: one line naming the output
    and the cause, exit 2, no temporary file and no output left."""
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, where, "_optimize.h5", str(TOY),
                           "--optimize", "--quiet"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    # the error is one line, the last; before it only Prospector's own write_hdf5
    # RuntimeWarnings (printed by every --optimize run), no traceback
    assert "Traceback" not in proc.stderr
    line, = [ln for ln in proc.stderr.splitlines() if ln.startswith("prospect_sim:")]
    assert proc.stderr.splitlines()[-1] == line
    assert line.startswith("prospect_sim: error: cannot write fit output ")
    assert "toy_params_optimize.h5: No space left on device (errno 28)" in line
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)


def test_workers_give_the_same_fit_as_serial(tmp_path):
    """Local processes: same seed, same queue, so the same dynesty run as serial with the
    queue the workers get (5 proposals at once for 2 workers and 40 live points)."""
    res = {}
    for name, extra in (("serial", ["--queue_size", "5"]), ("w2", ["--workers", "2"])):
        proc = _run(["--dynesty", *QUICK, "--outfile", name, *extra], tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        res[name], _, _ = _read(tmp_path / f"{name}_dynesty.h5")
    assert res["serial"]["prospect_sim_pool"] == {"kind": "serial", "size": 1}
    assert res["w2"]["prospect_sim_pool"] == {"kind": "processes", "size": 2}
    assert res["w2"]["chain"].shape[1] == 2
    for key in ("chain", "weights", "lnlikelihood"):
        np.testing.assert_array_equal(res["w2"][key], res["serial"][key], err_msg=key)


def test_dynesty_resume_after_a_crash(tmp_path):
    """Kill a dynesty run once it has checkpointed; --resume finishes it from the checkpoint:
    the same fit as an uninterrupted run, although the resumed process is given another
    --seed (which a run started again would follow)."""
    args = ["--dynesty", "--nlive_init", "40", "--nested_dlogz_init", "0.5",
            "--nested_maxbatch", "0", "--nested_sample", "unif", "--toy_delay", "0.001",
            "--checkpoint_every", "0.5", "--quiet"]
    whole = _run([*args, "--outfile", "whole"], tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    ckpt = tmp_path / "toy_params_dynesty_checkpoint.pkl"
    proc = subprocess.Popen([sys.executable, str(TOY), *args], cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "the run ended before its first checkpoint"
    assert not (tmp_path / "toy_params_dynesty.h5").exists()
    import dynesty
    saved = dynesty.DynamicNestedSampler.restore(str(ckpt))
    done_before = saved.it

    again = _run(args, tmp_path)                      # no --resume: refuse, keep the checkpoint
    assert again.returncode == 2 and "--resume" in again.stderr.strip().splitlines()[-1]
    assert ckpt.exists()

    resumed = _run([*args, "--resume", "--seed", "1"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    res, _, _ = _read(tmp_path / "toy_params_dynesty.h5")
    ref, _, _ = _read(tmp_path / "whole_dynesty.h5")
    assert res["niter"] >= done_before and res["chain"].shape[0] > 40
    for key in ("chain", "weights", "lnlikelihood"):
        np.testing.assert_array_equal(res[key], ref[key], err_msg=key)
    assert not ckpt.exists()
    # resuming a finished run writes nothing new
    again = _run([*args, "--resume"], tmp_path)
    assert again.returncode == 0 and again.stdout.strip().endswith("toy_params_dynesty.h5")


def test_default_dynesty_prints_no_library_noise(tmp_path):
    """Prospector's default slice sampler: no walks warning, no write_hdf5 warnings."""
    proc = _run(["--dynesty", "--nlive_init", "30", "--nested_dlogz_init", "2.0",
                 "--nested_maxbatch", "0", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for noise in ("Specifying walks", "Could not JSON serialize", "Could not obtain prospector"):
        assert noise not in proc.stderr, proc.stderr[-2000:]
