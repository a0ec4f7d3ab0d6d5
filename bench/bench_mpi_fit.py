"""Wall time of the demo dynesty fit: serial vs ``mpiexec -n 3`` (master + 2 workers).

    python bench/bench_mpi_fit.py [--nlive 50] [--walks 16] [--ranks 3] [--dlogz 1.0]

Runs ``param_files/demo_params.py --dynesty`` twice with the same settings
and seed, once serially and once under the venv's ``mpiexec``, and prints
both wall times (whole command, and dynesty's sampling time as written in the
results file), likelihood calls, and the ratios, all measured in this run.

What to expect. dynesty with K live points keeps M workers busy by proposing
M replacement points at once (``queue_size = M``); M points drawn above the
same likelihood threshold advance the run by about K ln(1 + M/K) iterations
instead of M (Handley et al. 2015; dynesty docs, "Parallelization"), so the
ideal speed-up is K ln(1 + M/K): 1.96 for K = 50, M = 2, and it saturates at
about K for M >> K. Where the time goes in this fit (seed 1, K = 50,
measured by instrumenting every rank): the serial run makes 8,806
likelihood calls of ~2.5 ms; under MPI the master sends 891 maps of 2
single-likelihood tasks (dynesty's unit-cube phase, before the first bound
update) and 263 maps of 2 random walks of 16 calls, so the message round
trip is paid ~1,150 times; 245 bound updates and the rest of dynesty's
bookkeeping (~1.2 s) run on the master while the workers wait; every rank
imports Prospector (~2 s) and builds its ingredients (0.3-0.5 s), i.e.
three processes start on two cores. Those two serial parts bound the
whole-command ratio to about 1.6x on 2 cores even with free messages.
Both runs use one BLAS thread per process. The "other load" line says how
many cores other programs kept busy around the runs: the ratios mean
little unless it is near 0. Never a timed assert: this only prints.
"""
import argparse
import json
import math
import os
import resource
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
    parser.add_argument("--nlive", type=int, default=50)
    parser.add_argument("--walks", type=int, default=16)
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dlogz", type=float, default=None,
                        help="--nested_dlogz_init (default 1.0; the demo's make demo uses 0.1)")
    opts = parser.parse_args()
    flags = ["--dynesty", "--nlive_init", str(opts.nlive), "--nested_dlogz_init", "1.0",
             "--nested_maxbatch", "0", "--nested_sample", "rwalk",
             "--nested_walks", str(opts.walks), "--seed", str(opts.seed), "--quiet"]
    if opts.dlogz is not None:
        flags[flags.index("--nested_dlogz_init") + 1] = str(opts.dlogz)
    busy_before = busy_cores()
    with tempfile.TemporaryDirectory() as tmp:
        wall_serial, cpu_serial, out_serial = run(
            [sys.executable, str(DEMO), *flags, "--outfile", "serial"], tmp)
        wall_mpi, cpu_mpi, out_mpi = run([str(MPIEXEC), "-n", str(opts.ranks), sys.executable,
                                          str(DEMO), *flags, "--outfile", "mpi"], tmp)
        ts_serial, nc_serial, n_serial = sampling_stats(Path(tmp) / out_serial)
        ts_mpi, nc_mpi, n_mpi = sampling_stats(Path(tmp) / out_mpi)
    busy_after = busy_cores()
    m, k = opts.ranks - 1, opts.nlive
    print(f"demo dynesty fit, K={k} live points, rwalk walks={opts.walks}, "
          f"dlogz_init={flags[flags.index('--nested_dlogz_init') + 1]}, {os.cpu_count()} cores")
    print(f"other load: {busy_before:.2f} cores busy just before, {busy_after:.2f} just after "
          f"(loadavg {' '.join(open('/proc/loadavg').read().split()[:3])})")
    print(f"{'':18s}{'wall s':>9s}{'cpu s':>8s}{'sampling s':>12s}{'ncall':>9s}"
          f"{'samples':>9s}{'calls/s':>9s}")
    for name, wall, cpu, ts, nc, n in (
            ("serial", wall_serial, cpu_serial, ts_serial, nc_serial, n_serial),
            (f"mpiexec -n {opts.ranks}", wall_mpi, cpu_mpi, ts_mpi, nc_mpi, n_mpi)):
        print(f"{name:18s}{wall:9.1f}{cpu:8.1f}{ts:12.1f}{nc:9d}{n:9d}{nc / ts:9.0f}")
    print(f"speed-up, whole command wall time : {wall_serial / wall_mpi:.2f}x")
    print(f"speed-up, dynesty sampling time   : {ts_serial / ts_mpi:.2f}x")
    print(f"likelihood throughput ratio       : {(nc_mpi / ts_mpi) / (nc_serial / ts_serial):.2f}x")
    print(f"ideal dynesty speed-up K ln(1+M/K) with M={m} workers: {k * math.log1p(m / k):.2f}x")


if __name__ == "__main__":
    main()
