"""MPIWorkPool.map under a real ``mpiexec -n 3``: order across chunks, errors, reuse."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MPIEXEC = Path(sys.executable).parent / "mpiexec"

pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec in the venv")]


def test_map_in_chunks_keeps_order_and_reports_errors(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}
    proc = subprocess.run([str(MPIEXEC), "-n", "3", sys.executable,
                           str(HERE / "pool_map_script.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "pool ok"
