"""Wall time of the demo dynesty fit: serial vs ``mpiexec -n 3`` (master + 2 workers).

    python bench/bench_mpi_fit.py [--repeats 3] [--ranks 3] [--nlive 100] [--dlogz 0.1]

Runs the demo's dynesty fit (``param_files/demo_params.py --dynesty`` with
the settings of ``examples/demo.sh``) serially and under the venv's
``mpiexec``, ``--repeats`` times with seeds 1, 2, ..., the runs of one seed
back to back so that a slow spell of this shared machine hits all of them,
and prints per run the wall time, CPU time of all processes, dynesty's
sampling time and likelihood calls, then the median ratios. Two MPI runs per
seed: dynesty's textbook ``queue_size = M`` (one proposal per worker per
round) and prospect_sim's default (:func:`prospect_sim.fit.queue_size`).

What to expect. dynesty with K live points and q proposals per round
advances by about K ln(1 + q/K) iterations per round instead of q (Handley
et al. 2015; dynesty docs, "Parallelization"), so with M workers the ideal
speed-up is K ln(1 + M/K): 1.98 for K = 100, M = 2. Less is reached here
because master + 2 workers are three processes on two cores: every rank
imports Prospector (~2 s of CPU each), the master's dynesty bookkeeping runs
while the workers wait, and each round trip costs polling and pickling. The
"cpu s" column is the sum over all processes: when it approaches twice the
wall time the two cores are saturated and only less total work helps.
Both runs use one BLAS thread per process. The "other load" line says how
many cores other programs kept busy around the runs: the ratios mean little
unless it is near 0. Never a timed assert: this only prints.
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "param_files" / "demo_params.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def busy_cores(seconds=2.0):
    """Cores kept busy by everything on the machine over ``seconds`` (Linux /proc/stat)."""
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], sum(v)
    try:
        b0, t0 = read()
        time.sleep(seconds)
        b1, t1 = read()
    except (OSError, ValueError):
        return float("nan")
    return (os.cpu_count() or 1) * (b1 - b0) / max(t1 - t0, 1)


def run(cmd, cwd):
    """Wall time, CPU time of the command and its children, and last stdout line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}
    # One BLAS thread in both runs: the MPI ranks use one each (prospect_sim.pool),
    # and the serial run must not get a second core from OpenBLAS threads.
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, proc.stdout.strip().splitlines()[-1]


def sampling_stats(path):
    import h5py
    with h5py.File(path, "r") as hf:
        s = hf["sampling"]
        return (json.loads(s.attrs["sampling_duration"]), int(sum(json.loads(s.attrs["ncall"]))),
                len(s["chain"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nlive", type=int, default=100, help="--nlive_init (demo: 100)")
    parser.add_argument("--walks", type=int, default=16)
    parser.add_argument("--dlogz", type=float, default=0.1, help="--nested_dlogz_init")
    parser.add_argument("--n_effective", type=int, default=1000,
                        help="--nested_target_n_effective (demo: 1000)")
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="seeds 1..repeats")
    opts = parser.parse_args()
    m, k = opts.ranks - 1, opts.nlive
    flags = ["--dynesty", "--nlive_init", str(k), "--nested_dlogz_init", str(opts.dlogz),
             "--nested_target_n_effective", str(opts.n_effective), "--nested_sample", "rwalk",
             "--nested_walks", str(opts.walks), "--quiet", "--overwrite"]
    mpi = [str(MPIEXEC), "-n", str(opts.ranks), sys.executable, str(DEMO)]
    configs = {"serial": [sys.executable, str(DEMO)],
               f"mpi, queue_size {m}": [*mpi, "--queue_size", str(m)],
               "mpi, default queue": mpi}
    busy_before = busy_cores()
    rows = {name: [] for name in configs}
    print(f"demo dynesty fit: K={k} live points, rwalk walks={opts.walks}, "
          f"dlogz_init={opts.dlogz}, n_effective={opts.n_effective}; {os.cpu_count()} cores")
    print(f"{'seed':>4s}  {'run':22s}{'wall s':>8s}{'cpu s':>8s}{'sampling s':>12s}"
          f"{'ncall':>8s}{'calls/s':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, opts.repeats + 1):
            for name, cmd in configs.items():
                out = f"run{len(rows[name])}_{name.split(',')[0]}"
                wall, cpu, last = run([*cmd, *flags, "--seed", str(seed), "--outfile", out], tmp)
                ts, nc, _ = sampling_stats(Path(tmp) / last)
                rows[name].append((wall, cpu, ts, nc))
                print(f"{seed:4d}  {name:22s}{wall:8.1f}{cpu:8.1f}{ts:12.1f}{nc:8d}"
                      f"{nc / ts:9.0f}", flush=True)
    busy_after = busy_cores()
    print(f"other load: {busy_before:.2f} cores busy just before, {busy_after:.2f} just after "
          f"(loadavg {' '.join(open('/proc/loadavg').read().split()[:3])})")
    serial = rows["serial"]
    for name in list(configs)[1:]:
        walls = [s[0] / r[0] for s, r in zip(serial, rows[name])]
        samp = [s[2] / r[2] for s, r in zip(serial, rows[name])]
        print(f"{name:22s} speed-up, whole command wall: median {statistics.median(walls):.2f}x "
              f"({', '.join(f'{x:.2f}' for x in walls)}); sampling: median "
              f"{statistics.median(samp):.2f}x")
    print(f"ideal dynesty speed-up K ln(1+M/K) with M={m} workers: {k * math.log1p(m / k):.2f}x")


if __name__ == "__main__":
    main()
