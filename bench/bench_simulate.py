"""Speed, memory and determinism of ``--simulate`` on the demo model, measured in one run.

    python bench/bench_simulate.py                      # the issue's numbers (minutes)
    python bench/bench_simulate.py --n_samples 200000   # quicker
    python bench/bench_simulate.py --skip_mpi --skip_rss
    python bench/bench_simulate.py --nebular            # the demo with nebular emission
    python bench/bench_simulate.py --nebular --dust_emission
    python bench/bench_simulate.py --nebular --dust_emission --agn   # every component

Prints, all measured in this run on this machine (timings are wall-clock and
noisy on a shared machine; rerun to see the spread):

1. per-object reference path (``SpecModel.predict`` with GridSPS), objects
   per CPU-second;
2. fast path in one process (``forward.predict_batch`` on one chunk),
   objects per CPU-second, and its worst-case disagreement with the reference path in magnitudes;
3. where the time of one chunk goes: unit-cube draws, prior transform,
   parameter mapping, sps photometry with the SFH summaries (one pass),
   result pickling, HDF5 write (CPU microseconds per object);
4. end to end: ``python demo_params.py --simulate --n_samples N --workers W``
   as a new process (start-up included), wall seconds and objects/s, and the
   ratio to the per-object path;
5. peak RSS of the master at N/10 and N rows (their difference must stay
   under 50 MB), and of the largest worker;
6. serial vs ``--workers 2`` vs ``mpiexec -n 3``: same content digest.

Nothing here is asserted; ``tests/`` hold the correctness checks.
"""

import argparse
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "param_files" / "demo_params.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"

# Runs the parameter file as __main__ and reports this process's and its
# children's peak RSS (kB on Linux) on stderr.
_RSS_WRAPPER = """
import resource, runpy, sys
param_file = sys.argv[1]
sys.argv = [param_file] + sys.argv[2:]
try:
    runpy.run_path(param_file, run_name="__main__")
finally:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    sys.stderr.write(f"BENCH_RSS {me} {kids}\\n")
"""


def _rate(n, seconds):
    return n / seconds if seconds > 0 else float("nan")


#: Extra flags given to the demo parameter file (``--nebular`` adds to it).
DEMO_FLAGS = []


def in_process(n_ref, chunk):
    """Reference vs fast path, and the cost of each step of a chunk."""
    import prospect_sim.sps  # noqa: F401
    from prospect_sim import forward, simulate
    from prospect_sim.paramfile import load
    from prospect_sim.store import SimulationStore

    ing = load(DEMO).build({"sps_library": "grid", "mock_zred": 0.4, "mock_seed": 101,
                            "nebular": "--nebular" in DEMO_FLAGS,
                            "dust_emission": "--dust_emission" in DEMO_FLAGS,
                            "agn": "--agn" in DEMO_FLAGS})
    model, sps, obs = ing.model, ing.sps, ing.obs
    out = {}

    u = simulate.draw_unit("random", 0, 0, chunk, chunk, model.ndim)
    theta = forward.prior_transform(model, u)
    ref_theta = theta[:n_ref]
    # in-process rates per CPU-second (one thread): steady on a shared machine
    t = time.process_time()
    ref, _ = forward.predict_batch(model, sps, obs, ref_theta, path="reference")
    out["reference"] = _rate(n_ref, time.process_time() - t)

    # warm-up: the tables of every redshift group the chunk reaches (as simulate.prepare)
    forward.predict_batch(model, sps, obs, theta, path="fast")
    t = time.process_time()
    fast, extras = forward.predict_batch(model, sps, obs, theta, path="fast")
    out["fast_1proc"] = _rate(chunk, time.process_time() - t)
    with np.errstate(all="ignore"):
        dmag = np.abs(2.5 * np.log10(fast[:n_ref] / ref))
    out["max_dmag"] = float(np.nanmax(dmag))
    out["p99_dmag"] = float(np.nanpercentile(dmag, 99))

    def per_object(func, reps=3):
        func()
        t = time.process_time()
        for _ in range(reps):
            func()
        return (time.process_time() - t) / reps / chunk * 1e6

    params = forward.batch_params(model, theta)
    phot_all = fast
    valid = np.isfinite(phot_all).all(axis=1)
    result = (0, theta, phot_all, extras, valid)
    steps = {
        "unit-cube draws": lambda: simulate.draw_unit("random", 0, 1, chunk, chunk, model.ndim),
        "prior transform": lambda: forward.prior_transform(model, u),
        "parameter mapping": lambda: forward.batch_params(model, theta),
        "sps.photometry+props": lambda: sps.photometry_and_properties(params, obs["filters"]),
        "pickle result": lambda: pickle.loads(pickle.dumps(result, protocol=5)),
    }
    out["steps"] = {name: per_object(func) for name, func in steps.items()}
    with tempfile.TemporaryDirectory() as tmp:
        store = SimulationStore.create(
            Path(tmp) / "w.h5", theta_labels=model.theta_labels(),
            filter_names=[f.name for f in obs["filters"]], extras=list(forward.EXTRAS),
            n_samples=chunk * 12, chunk_size=chunk, seed=0)
        k = iter(range(12))
        out["steps"]["HDF5 write + flush"] = per_object(
            lambda: store.write_chunk(next(k), theta, phot_all, extras, valid))
        store.close()
    return out


def run_simulate(n, workers, simfile, mpi=False, rss=False):
    """One ``--simulate`` run as a new process; wall seconds, rate, RSS (MB)."""
    args = ["--simulate", "--n_samples", str(n), "--simfile", str(simfile),
            "--overwrite"] + DEMO_FLAGS
    if workers > 1 and not mpi:
        args += ["--workers", str(workers)]
    if mpi:
        cmd = [str(MPIEXEC), "-n", str(workers + 1), sys.executable, str(DEMO)] + args
    elif rss:
        cmd = [sys.executable, "-c", _RSS_WRAPPER, str(DEMO)] + args
    else:
        cmd = [sys.executable, str(DEMO)] + args
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    m = re.search(r"in ([\d.]+) s \(([\d,]+) objects/s", proc.stderr)
    out = {"wall": wall, "sim_seconds": float(m.group(1)) if m else float("nan"),
           "rate": float(m.group(2).replace(",", "")) if m else float("nan")}
    m = re.search(r"BENCH_RSS (\d+) (\d+)", proc.stderr)
    if m:
        out["rss_master_mb"] = int(m.group(1)) / 1024
        out["rss_worker_mb"] = int(m.group(2)) / 1024
    return out


def digest(path):
    from prospect_sim.info import content_digest
    from prospect_sim.store import SimulationStore
    with SimulationStore(path) as store:
        return content_digest(store)


def main():
    from prospect_sim import simulate
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n_samples", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n_reference", type=int, default=300,
                        help="objects through the per-object path")
    parser.add_argument("--chunk", type=int, default=simulate.DEFAULT_CHUNK_SIZE,
                        help="rows of the in-process chunk")
    parser.add_argument("--n_determinism", type=int, default=100_000)
    parser.add_argument("--skip_mpi", action="store_true")
    parser.add_argument("--skip_rss", action="store_true")
    parser.add_argument("--nebular", action="store_true",
                        help="the demo model with nebular emission (demo_params.py --nebular)")
    parser.add_argument("--dust_emission", action="store_true",
                        help="the demo model with dust emission (demo_params.py --dust_emission)")
    parser.add_argument("--agn", action="store_true",
                        help="the demo model with an AGN (demo_params.py --agn)")
    opts = parser.parse_args()
    DEMO_FLAGS.extend(flag for flag, on in (("--nebular", opts.nebular),
                                            ("--dust_emission", opts.dust_emission),
                                            ("--agn", opts.agn)) if on)
    n = opts.n_samples

    print(f"bench_simulate {' '.join(DEMO_FLAGS)} on {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f}); "
          "wall-clock timings on a shared machine are noisy")
    ip = in_process(opts.n_reference, opts.chunk)
    print(f"\n1. per-object reference path (SpecModel.predict + GridSPS): "
          f"{ip['reference']:,.0f} objects per CPU-s ({opts.n_reference} objects)")
    print(f"2. fast path, one process, one chunk of {opts.chunk}: {ip['fast_1proc']:,.0f} "
          f"objects per CPU-s = {ip['fast_1proc'] / ip['reference']:,.0f} x reference; "
          f"|fast - reference| max {ip['max_dmag']:.2e} mag, 99% {ip['p99_dmag']:.2e} mag")
    print("3. CPU time per object of one chunk (microseconds):")
    total = sum(ip["steps"].values())
    for name, us in ip["steps"].items():
        print(f"     {name:<22s}{us:9.3f}  ({us / total:5.1%})")
    ours = sum(v for k, v in ip["steps"].items() if not k.startswith("sps."))
    print(f"     {'outside the sps':<22s}{ours:9.3f}  ({ours / total:5.1%})")

    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmp = Path(tmp)
        e2e = run_simulate(n, opts.workers, tmp / "e2e.h5", rss=not opts.skip_rss)
        print(f"4. end to end, --n_samples {n:,} --workers {opts.workers}: "
              f"{e2e['wall']:.1f} s wall (process start included; simulation phase "
              f"{e2e['sim_seconds']:.1f} s), {e2e['rate']:,.0f} objects/s = "
              f"{e2e['rate'] / ip['reference']:,.0f} x the per-object path; "
              f"{_rate(n, e2e['wall']):,.0f} objects/s counting start-up")
        if not opts.skip_rss:
            small = run_simulate(max(n // 10, 1), opts.workers, tmp / "small.h5", rss=True)
            print(f"5. peak RSS of the master: {small['rss_master_mb']:.0f} MB at "
                  f"{max(n // 10, 1):,} rows, {e2e['rss_master_mb']:.0f} MB at {n:,} rows "
                  f"(difference {e2e['rss_master_mb'] - small['rss_master_mb']:+.0f} MB); "
                  f"largest worker {e2e['rss_worker_mb']:.0f} MB")
        m = opts.n_determinism
        runs = {"serial": run_simulate(m, 1, tmp / "serial.h5"),
                "--workers 2": run_simulate(m, 2, tmp / "workers.h5")}
        files = {"serial": tmp / "serial.h5", "--workers 2": tmp / "workers.h5"}
        if not opts.skip_mpi and MPIEXEC.exists():
            runs["mpiexec -n 3"] = run_simulate(m, 2, tmp / "mpi.h5", mpi=True)
            files["mpiexec -n 3"] = tmp / "mpi.h5"
        digests = {k: digest(p) for k, p in files.items()}
        same = len(set(digests.values())) == 1
        print(f"6. determinism at {m:,} rows: "
              + ", ".join(f"{k} {digests[k][:12]} ({runs[k]['rate']:,.0f}/s)" for k in files)
              + (" -> identical datasets" if same else " -> DIFFERENT"))


if __name__ == "__main__":
    main()
