"""``--nautilus`` on the demo galaxy: a Prospector results file, and resume refusals."""

import subprocess
import sys
from pathlib import Path

import numpy as np

DEMO = Path(__file__).resolve().parents[2] / "param_files" / "demo_params.py"
FAST = ["--nautilus_nlive", "200", "--nautilus_neff", "300", "--quiet"]


def _run(tmp_path, *args):
    return subprocess.run([sys.executable, str(DEMO), "--nautilus", "--outfile",
                           str(tmp_path / "demo")] + FAST + list(args),
                          capture_output=True, text=True, timeout=600, cwd=str(tmp_path))


def test_nautilus_writes_a_prospector_results_file(tmp_path):
    from prospect.io.read_results import results_from
    run = _run(tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    path = run.stdout.strip().splitlines()[-1]
    assert path.endswith("demo_nautilus.h5")
    assert not (tmp_path / "demo_nautilus_checkpoint.h5").exists()
    res, obs, _ = results_from(path, dangerous=False)
    chain, weights = np.asarray(res["chain"]), np.asarray(res["weights"])
    assert chain.ndim == 2 and len(weights) == len(chain)
    assert abs(weights.sum() - 1) < 1e-6
    ess = 1 / np.sum(weights**2)
    assert ess > 250
    assert np.all(np.isfinite(res["stellar_mass"])) and np.all(res["stellar_mass"] > 0)
    # the posterior of log mass is near the demo mock's truth and narrower than the prior
    labels = list(res["theta_labels"])
    logm = chain[:, labels.index("logmass")] if "logmass" in labels else np.log10(
        chain[:, labels.index("mass")])
    mean = np.sum(weights * logm)
    sd = np.sqrt(np.sum(weights * (logm - mean)**2))
    assert sd < 0.5
    again = _run(tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr
