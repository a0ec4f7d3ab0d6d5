"""Classical fits of a whole catalogue (``--catalog`` with a fitter), run as a user runs them.

Eight demo mocks at known redshifts, three of them broken (a missing band,
a non-numeric value, no flux at all).  emcee fits are deterministic per
row (numpy's global seed is set before each), so serial, ``--workers 2``,
``mpiexec -n 3`` and a killed-then-resumed run must write the same draws.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "param_files" / "demo_params.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
EMCEE = ["--emcee", "--nwalkers", "16", "--niter", "24", "--nburn", "8", "--n_draws", "50"]
ZRED = [0.2, 0.4, 0.7, 1.0, 0.5, 0.3, 0.9, 0.6]


def _env():
    return {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}


def _run(args, cwd, timeout=400, launcher=()):
    return subprocess.run([*map(str, launcher), sys.executable, str(DEMO), *map(str, args)],
                          cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """CSV of the demo galaxy at eight redshifts; rows 4-6 are broken on purpose."""
    import prospect_sim  # noqa: F401
    sys.path.insert(0, str(DEMO.parent))
    import demo_params as p
    from sedpy.observate import load_filters
    model, sps = p.build_model(), p.build_sps()
    obs = {"filters": load_filters(p.FILTERS), "wavelength": None, "spectrum": None}
    rng = np.random.default_rng(4)
    rows = []
    for i, z in enumerate(ZRED):
        truth = dict(p.TRUTH, zred=z)
        _, maggies, _ = model.predict(np.array([truth[n] for n in model.free_params]),
                                      obs=obs, sps=sps)
        sigma = p.photometric_sigma(maggies)
        rows.append([f"gal{i}"] + list(maggies + rng.normal(0, sigma)) + list(sigma))
    rows[4][1] = float("nan")          # DECam g missing
    rows[5][2] = "oops"                # non-numeric
    rows[6][1:6] = [""] * 5            # no flux
    path = tmp_path_factory.mktemp("catalog") / "cat.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["objid"] + [f"{f}_flux" for f in p.FILTERS]
                        + [f"{f}_unc" for f in p.FILTERS])
        writer.writerows(rows)
    return path


def _read(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in f}, dict(f.attrs)


def test_optimize_fits_every_row_and_flags_the_broken_ones(catalog, tmp_path):
    proc = _run(["--optimize", "--min_method", "powell", "--catalog", catalog,
                 "--n_draws", "5"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "demo_params_optimize_catalog.h5"
    assert proc.stdout.strip().splitlines()[-1] == out.name
    data, attrs = _read(out)
    assert [i.decode() for i in data["id"]] == [f"gal{i}" for i in range(8)]
    np.testing.assert_array_equal(data["flags"], [0, 0, 0, 0, 4, 1, 2, 0])
    np.testing.assert_array_equal(data["n_bands"], [5, 5, 5, 5, 4, 0, 0, 5])
    assert data["done"].all() and not (tmp_path / (out.name + ".part")).exists()
    fitted = data["flags"] & 3 == 0
    assert np.isfinite(data["summary"][fitted]).all()
    assert np.isnan(data["summary"][~fitted]).all()
    assert data["summary"].shape == (8, 9, 5) and attrs["kind"] == "optimize"
    # each row was optimised against its own photometry: its best fit beats
    # the common starting point (the model's initial values) on that row
    from prospect.fitting import lnprobfn
    from prospect_sim.catalog_fit import row_obs
    from prospect_sim.paramfile import load
    ing = load(DEMO).build({})
    table = list(csv.reader(catalog.read_text().splitlines()))[1:]
    for i in np.flatnonzero(fitted):
        obs, _ = row_obs(ing.obs, np.array(table[i][1:6], float), np.array(table[i][6:], float))

        def lnp(theta):
            return lnprobfn(theta, model=ing.model, obs=obs, sps=ing.sps)

        assert lnp(data["summary"][i, :6, 2]) > lnp(ing.model.initial_theta) + 1.0, i
    assert "1 row flagged 1" in proc.stderr and "1 row flagged 2" in proc.stderr
    info = subprocess.run([sys.executable, "-m", "prospect_sim", "info", str(out)],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert info.returncode == 0, info.stderr
    assert "rows: 8, done 8, fitted 6" in info.stdout and "flag 2: 1 row" in info.stdout
    # nothing is replaced without --overwrite
    before = out.stat().st_mtime_ns
    again = _run(["--optimize", "--min_method", "powell", "--catalog", catalog], tmp_path)
    assert again.returncode == 2 and "--overwrite" in again.stderr.strip().splitlines()[-1]
    assert out.stat().st_mtime_ns == before


def test_bad_catalogues_and_modes_are_refused_in_one_line(catalog, tmp_path):
    broken = tmp_path / "broken.csv"
    lines = catalog.read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, h in enumerate(header) if not h.startswith("decam_z")]
    broken.write_text("\n".join(",".join(line.split(",")[i] for i in keep)
                                for line in lines) + "\n")
    proc = _run(["--optimize", "--min_method", "powell", "--catalog", broken], tmp_path)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "decam_z_flux" in last and "decam_z_unc" in last
    empty = tmp_path / "empty.csv"
    empty.write_text(catalog.read_text().splitlines()[0] + "\n")
    proc = _run(["--optimize", "--min_method", "powell", "--catalog", empty], tmp_path)
    assert proc.returncode == 2 and "no rows" in proc.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.glob("*.h5*"))
    proc = _run(["--simulate", "--n_samples", "10", "--catalog", catalog], tmp_path)
    assert proc.returncode == 2 and "--catalog" in proc.stderr.strip().splitlines()[-1]
    proc = _run([*EMCEE, "--catalog", catalog, "--id_column", "name"], tmp_path)
    assert proc.returncode == 2 and "--id_column name" in proc.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def serial_emcee(catalog, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("serial")
    proc = _run([*EMCEE, "--catalog", catalog, "--quiet"], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _read(cwd / "demo_params_emcee_catalog.h5")[0]


def _same_fits(a, b):
    np.testing.assert_array_equal(a["flags"], b["flags"])
    np.testing.assert_array_equal(a["draws"], b["draws"])
    np.testing.assert_array_equal(a["summary"], b["summary"])


def test_emcee_draws_and_summaries(serial_emcee):
    data = serial_emcee
    fitted = data["flags"] & 3 == 0
    assert data["draws"].shape == (8, 50, 6)
    assert np.isfinite(data["draws"][fitted]).all() and np.isnan(data["draws"][~fitted]).all()
    lo, mid, hi = data["summary"][fitted][:, :, 1:4].transpose(2, 0, 1)
    assert np.all(lo <= mid) and np.all(mid <= hi)
    assert np.all(data["ncall"][fitted] >= 16 * 32)
    assert np.all(np.isnan(data["logz"]))           # emcee has no evidence


def test_two_local_workers_write_the_same_fits(catalog, serial_emcee, tmp_path):
    proc = _run([*EMCEE, "--catalog", catalog, "--workers", "2", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same_fits(_read(tmp_path / "demo_params_emcee_catalog.h5")[0], serial_emcee)


@pytest.mark.mpi
def test_mpiexec_3_writes_the_same_fits(catalog, serial_emcee, tmp_path):
    proc = _run([*EMCEE, "--catalog", catalog, "--quiet"], tmp_path,
                launcher=(MPIEXEC, "-n", "3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same_fits(_read(tmp_path / "demo_params_emcee_catalog.h5")[0], serial_emcee)


def test_a_killed_catalogue_fit_resumes_where_it_stopped(catalog, tmp_path):
    slow = [*EMCEE, "--niter", "1000"]            # about 2 s per row: time to kill it
    reference = tmp_path / "reference"
    reference.mkdir()
    proc = _run([*slow, "--catalog", catalog, "--quiet"], reference)
    assert proc.returncode == 0, proc.stderr[-3000:]
    part = tmp_path / "demo_params_emcee_catalog.h5.part"
    proc = subprocess.Popen([sys.executable, str(DEMO), *slow, "--catalog", str(catalog),
                             "--quiet"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, done = time.time() + 300, 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
        try:
            with h5py.File(part, "r", locking=False) as f:     # being written
                done = int(f["done"][:].sum())
        except (OSError, KeyError, ValueError):
            continue
        if done >= 2:
            break
    assert proc.poll() is None, "the fit finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert part.exists() and 2 <= done < 8
    refused = _run([*slow, "--catalog", catalog], tmp_path)
    assert refused.returncode == 2 and "--resume" in refused.stderr.strip().splitlines()[-1]
    with h5py.File(part, "r") as f:
        done = int(f["done"][:].sum())
    resumed = _run([*slow, "--catalog", catalog, "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"rows ({8 - done} to do)" in resumed.stderr, resumed.stderr[-2000:]
    assert not part.exists()
    _same_fits(_read(tmp_path / "demo_params_emcee_catalog.h5")[0],
               _read(reference / "demo_params_emcee_catalog.h5")[0])


def test_a_sampler_that_is_not_installed_is_named_with_its_pip_install(catalog, tmp_path):
    """nautilus hidden from the import system: one line, exit 2, nothing written."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'nautilus' or name.startswith('nautilus.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Hide())\n")
    env = dict(_env(), PYTHONPATH=str(hide))
    for extra in ([], ["--catalog", str(catalog)]):
        proc = subprocess.run([sys.executable, str(DEMO), "--nautilus", *extra], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 2 and "pip install nautilus-sampler" in last, proc.stderr
    assert not list(tmp_path.glob("*.h5*"))
