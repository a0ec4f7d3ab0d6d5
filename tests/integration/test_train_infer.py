"""The amortised workflow through the real demo parameter file and command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "param_files" / "demo_params.py"
EXAMPLE = ROOT / "examples" / "amortized_walkthrough.py"

pytestmark = pytest.mark.skipif(not PARAMS.exists(), reason="param_files/demo_params.py missing")


def _run(*args, cwd):
    return subprocess.run([sys.executable, str(PARAMS), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_walkthrough_example_runs(tmp_path):
    out = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(tmp_path), "--small"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    with h5py.File(tmp_path / "demo_posterior.h5") as h5:
        assert h5["samples"].shape == (20, 100, 6)
        assert h5["flags"][:].sum() == 0
    report = json.loads((tmp_path / "demo_flow_validation.json").read_text())
    assert report["param_labels"] == ["zred", "mass", "logzsol", "dust2", "tage", "tau"]
    for png in ("coverage", "ranks", "tarp", "corner"):
        assert (tmp_path / f"demo_flow_{png}.png").stat().st_size > 1000


def test_infer_without_a_trained_model_is_one_clear_line(tmp_path):
    out = _run("--infer", "--outfile", tmp_path / "x", cwd=tmp_path)
    assert out.returncode == 2
    assert "x_flow.pt" in out.stderr and "Traceback" not in out.stderr


def test_train_refuses_a_simulation_file_of_another_model(tmp_path):
    from prospect_sim.amortized.toy import LinearGaussianToy
    sims = LinearGaussianToy().write_simfile(str(tmp_path / "toy_sims.h5"), 200)
    out = _run("--train", "--simfile", sims, "--outfile", tmp_path / "x", "--epochs", "1",
               cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "does not match" in out.stderr and "free parameters" in out.stderr
    assert "Traceback" not in out.stderr
    assert not os.path.exists(tmp_path / "x_flow.pt")
