"""The shipped parameter files fitted end to end, as a user runs them (subprocesses).

Small settings (few live points / walkers); results are read back with
Prospector's own reader. The demo is a mock with known truth, so the dynesty
fit is also checked against it (loosely: a quick, low-nlive run).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "param_files" / "demo_params.py"
CLUSTERS = ROOT / "param_files" / "clusters_params.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"

try:  # the embedded SPS is another module; these tests need it
    from prospect_sim.sps import build_sps  # noqa: F401
    HAVE_SPS = True
except ImportError:
    HAVE_SPS = False
pytestmark = pytest.mark.skipif(not HAVE_SPS, reason="prospect_sim.sps.build_sps not available")

DYNESTY = ["--dynesty", "--nlive_init", "30", "--nested_dlogz_init", "2.0",
           "--nested_maxbatch", "0", "--nested_sample", "rwalk", "--nested_walks", "8"]
EMCEE = ["--emcee", "--nwalkers", "16", "--niter", "8", "--nburn", "4"]


def _run(cmd, cwd, timeout=580):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}
    return subprocess.run([*map(str, cmd)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _read(path):
    from prospect.io.read_results import results_from
    return results_from(str(path), dangerous=False)


def test_demo_optimize(tmp_path):
    # 5 bands, 6 free parameters: Levenberg-Marquardt (the default) is refused clearly
    proc = _run([sys.executable, DEMO, "--optimize", "--quiet"], tmp_path)
    assert proc.returncode == 2 and "--min_method powell" in proc.stderr.strip().splitlines()[-1]
    proc = _run([sys.executable, DEMO, "--optimize", "--min_method", "powell", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "demo_params_optimize.h5"
    res, obs, _ = _read(tmp_path / "demo_params_optimize.h5")
    opt = res["optimization"]
    assert opt["optimizer_results"]["x"].shape == (1, 6)
    assert 0 < opt["mfrac"][0] < 1 and opt["stellar_mass"][0] > 0
    assert [str(f) for f in obs["filternames"]][0] == "decam_g"


def test_demo_emcee(tmp_path):
    proc = _run([sys.executable, DEMO, *EMCEE, "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res, obs, _ = _read(tmp_path / "demo_params_emcee.h5")
    assert res["chain"].shape == (16, 8, 6)
    assert np.all((res["mfrac"] > 0.2) & (res["mfrac"] < 1))
    # the sampling skipped the smoothed spectrum; the stored best fit is Prospector's own
    from prospect_sim.paramfile import load
    ing = load(DEMO).build({})
    model, best = ing.model, res["bestfit"]
    spec, phot, _ = model.predict(best["parameter"], obs=ing.obs, sps=ing.sps)
    np.testing.assert_allclose(best["spectrum"], spec, rtol=1e-6)
    np.testing.assert_allclose(best["photometry"], phot, rtol=1e-8)
    assert not np.allclose(spec, model._norm_spec, rtol=1e-3, atol=0)   # smoothed


@pytest.mark.slow
def test_demo_dynesty_recovers_the_mock(tmp_path):
    proc = _run([sys.executable, DEMO, *DYNESTY, "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res, obs, _ = _read(tmp_path / "demo_params_dynesty.h5")
    labels = res["theta_labels"]
    chain, w = res["chain"], res["weights"]
    assert chain.shape[1] == 6 and w.sum() == pytest.approx(1.0)
    # The sampler must find fits at least about as good as the truth: the
    # likelihood of the noisy mock at the true parameters (Prospector's
    # Gaussian lnlike_phot) minus 2, since a 30-live-point run does not
    # climb all the way to the peak. (Posterior means are not compared: with
    # 5 bands and a free redshift, mass and zred are strongly degenerate.)
    var = obs["maggies_unc"] ** 2
    lnl_truth = -0.5 * np.sum((obs["maggies"] - obs["true_maggies"]) ** 2 / var
                              + np.log(2 * np.pi * var))
    assert res["lnlikelihood"].max() >= lnl_truth - 2.0
    logm = np.log10(chain[:, labels.index("mass")])
    assert abs(np.average(logm, weights=w) - np.log10(3e10)) < 1.0
    assert np.all(res["stellar_mass"] < chain[:, labels.index("mass")])


@pytest.mark.slow
@pytest.mark.mpi
def test_demo_emcee_and_dynesty_under_mpiexec_3(tmp_path):
    for flags, out in ((EMCEE, "demo_params_emcee.h5"), (DYNESTY, "demo_params_dynesty.h5")):
        proc = _run([MPIEXEC, "-n", "3", sys.executable, DEMO, *flags, "--quiet"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip().splitlines()[-1] == out
        res, _, _ = _read(tmp_path / out)
        assert res["prospect_sim_pool"] == {"kind": "mpi", "size": 2}


@pytest.mark.slow
def test_clusters_emcee(tmp_path):
    proc = _run([sys.executable, CLUSTERS, *EMCEE, "--objid", "1", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res, obs, _ = _read(tmp_path / "clusters_params_emcee.h5")
    assert res["chain"].shape[:2] == (16, 8)
    assert res["run_params"]["objid"] == 1
