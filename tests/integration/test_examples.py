"""The example scripts run as the README says and make what they promise."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_components_sed_example(tmp_path):
    run = subprocess.run([sys.executable, "examples/components_sed.py", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    png = tmp_path / "components_sed.png"
    assert run.stdout.strip().splitlines()[-1] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    totals = [float(m) for m in re.findall(r"L = ([0-9.e+-]+) Lsun", run.stdout)]
    stars, nebular, dust, agn = totals
    # dust emission returns the absorbed light, the AGN adds its own
    assert dust > 1.2 * nebular and agn > 1.2 * dust
