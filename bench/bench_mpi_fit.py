"""Wall time of the demo dynesty fit: serial vs ``mpiexec -n 3`` (master + 2 workers).

    python bench/bench_mpi_fit.py [--nlive 50] [--walks 16] [--ranks 3]

Runs ``param_files/demo_params.py --dynesty`` twice with the same settings
and seed, once serially and once under the venv's ``mpiexec``, and prints
both wall times (whole command, and dynesty's sampling time as written in the
results file), likelihood calls, and the ratios, all measured in this run.

What to expect. dynesty with K live points keeps M workers busy by proposing
M replacement points at once (``queue_size = M``); M points drawn above the
same likelihood threshold advance the run by about K ln(1 + M/K) iterations
instead of M (Handley et al. 2015; dynesty docs, "Parallelization"), so the
ideal speed-up is K ln(1 + M/K): 1.96 for K = 50, M = 2, and it saturates at
about K for M >> K. Each task here is a whole random walk (``--walks``
likelihood calls of ~3 ms), so messages are cheap and the master's
bookkeeping (bounds, stopping rule) is what keeps the measured ratio below
the ideal. Both runs use one BLAS thread per process (OpenBLAS's own
threads oversubscribe a small machine: 20 ms vs 2.9 ms per demo likelihood
call on the 2-core development machine). Never a timed assert: this only prints.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "param_files" / "demo_params.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def run(cmd, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}
    # One BLAS thread in both runs: the MPI ranks use one each (prospect_sim.pool),
    # and the serial run must not get a second core from OpenBLAS threads.
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout.strip().splitlines()[-1]


def sampling_stats(path):
    import h5py
    with h5py.File(path, "r") as hf:
        s = hf["sampling"]
        return (json.loads(s.attrs["sampling_duration"]), int(sum(json.loads(s.attrs["ncall"]))),
                len(s["chain"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nlive", type=int, default=50)
    parser.add_argument("--walks", type=int, default=16)
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    opts = parser.parse_args()
    flags = ["--dynesty", "--nlive_init", str(opts.nlive), "--nested_dlogz_init", "1.0",
             "--nested_maxbatch", "0", "--nested_sample", "rwalk",
             "--nested_walks", str(opts.walks), "--seed", str(opts.seed), "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        wall_serial, out_serial = run([sys.executable, str(DEMO), *flags, "--outfile", "serial"], tmp)
        wall_mpi, out_mpi = run([str(MPIEXEC), "-n", str(opts.ranks), sys.executable, str(DEMO),
                                 *flags, "--outfile", "mpi"], tmp)
        ts_serial, nc_serial, n_serial = sampling_stats(Path(tmp) / out_serial)
        ts_mpi, nc_mpi, n_mpi = sampling_stats(Path(tmp) / out_mpi)
    m, k = opts.ranks - 1, opts.nlive
    print(f"demo dynesty fit, K={k} live points, rwalk walks={opts.walks}, {os.cpu_count()} cores")
    print(f"{'':18s}{'wall s':>9s}{'sampling s':>12s}{'ncall':>9s}{'samples':>9s}{'calls/s':>9s}")
    for name, wall, ts, nc, n in (("serial", wall_serial, ts_serial, nc_serial, n_serial),
                                  (f"mpiexec -n {opts.ranks}", wall_mpi, ts_mpi, nc_mpi, n_mpi)):
        print(f"{name:18s}{wall:9.1f}{ts:12.1f}{nc:9d}{n:9d}{nc / ts:9.0f}")
    print(f"speed-up, whole command wall time : {wall_serial / wall_mpi:.2f}x")
    print(f"speed-up, dynesty sampling time   : {ts_serial / ts_mpi:.2f}x")
    print(f"likelihood throughput ratio       : {(nc_mpi / ts_mpi) / (nc_serial / ts_serial):.2f}x")
    print(f"ideal dynesty speed-up K ln(1+M/K) with M={m} workers: {k * math.log1p(m / k):.2f}x")


if __name__ == "__main__":
    main()
