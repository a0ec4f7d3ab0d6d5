"""``--simulate`` on the real demo parameter file (GridSPS, DES grizY)."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from prospect_sim import forward, info, simulate
from prospect_sim.paramfile import load

DEMO = Path(__file__).resolve().parents[2] / "param_files" / "demo_params.py"


@pytest.fixture(scope="module")
def demo():
    return load(DEMO).build({"sps_library": "grid", "mock_zred": 0.4, "mock_seed": 101})


def test_fast_path_agrees_with_per_object_predict(demo):
    """The batched kernel and SpecModel.predict agree to 1e-3 mag over the prior."""
    model, sps, obs = demo.model, demo.sps, demo.obs
    assert forward.has_fast_path(sps)
    u = simulate.draw_unit("random", 0, 0, 64, 64, model.ndim)
    theta = forward.prior_transform(model, u)
    fast, extras_fast = forward.predict_batch(model, sps, obs, theta, path="fast")
    ref, extras_ref = forward.predict_batch(model, sps, obs, theta, path="reference")
    assert fast.shape == (64, 5) and np.isfinite(ref).all() and (ref > 0).all()
    dmag = np.abs(2.5 * np.log10(fast / ref))
    assert dmag.max() < 1e-3, dmag.max()
    np.testing.assert_allclose(extras_fast["mfrac"], extras_ref["mfrac"], rtol=1e-3)
    mass = theta[:, model.theta_labels().index("mass")]
    np.testing.assert_allclose(extras_fast["stellar_mass"], mass * extras_fast["mfrac"])
    assert (extras_fast["mfrac"] > 0.3).all() and (extras_fast["mfrac"] < 1).all()
    assert (extras_fast["sfr100"] >= 0).all()
    tage = theta[:, model.theta_labels().index("tage")]
    assert (extras_fast["mwa"] > 0).all() and (extras_fast["mwa"] <= tage * 1.001).all()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    path = tmp_path / "demo_sims.h5"
    cmd = [sys.executable, str(DEMO), "--simulate", "--n_samples", "3000", "--chunk_size",
           "1000", "--outfile", str(tmp_path / "demo")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(path)
    assert "objects/s" in proc.stderr and "0 invalid" in proc.stderr
    with h5py.File(path, "r") as f:
        assert f.attrs["sps"] == "GridSPS(bc03)" and f.attrs["forward_path"] == "fast"
        assert list(f.attrs["filter_names"]) == ["decam_g", "decam_r", "decam_i", "decam_z",
                                                 "decam_Y"]
        assert f["valid"][()].all() and f["chunks_done"][()].all()
    assert "integrity: OK" in info.describe(path)
