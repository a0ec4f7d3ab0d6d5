"""--infer on catalogues (CSV, HDF5, FITS), flags, resume, importance sampling."""

import os

import h5py
import numpy as np
import pytest

from prospect_sim.amortized.importance import Reweighter, ess, weighted_quantiles
from prospect_sim.amortized.infer import FLAGS, CatalogSource, ObsSource, infer
from prospect_sim.amortized.noise import FixedNoise
from prospect_sim.amortized.posterior import load_checkpoint
from prospect_sim.amortized.toy import LinearGaussianToy
from prospect_sim.amortized.train import train
from prospect_sim.errors import InferenceError, UsageError

# 20 epochs on 7,200 simulations (5 s): posterior means within ~0.15 sd of the analytic
# ones and widths within ~10%, with band 2 or without it
OPTS = dict(epochs=20, batch_size=128, hidden=32, transforms=2, bins=8, embedding="32",
            embed_dim=16, patience=100, lr=2e-3, n_test=100, val_fraction=0.1,
            validate_after_train=False)
INFER = dict(n_draws=50, infer_batch=4, infer_seed=3)
P_MISSING = [0.0, 0.0, 0.3]   # the network learns band 2 missing


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("infer")
    toy = LinearGaussianToy()
    noise = FixedNoise(np.full(toy.n_bands, toy.sigma * toy.scale), p_missing=P_MISSING)
    sims = toy.write_simfile(str(d / "sims.h5"), 8000)
    ck = train(sims, toy.problem, noise, str(d / "flow.pt"), OPTS, quiet=True)
    return toy, ck, load_checkpoint(ck)


@pytest.fixture
def source():
    """Opens catalogue sources and closes them after the test."""
    opened = []

    def open_(path, toy, cls=CatalogSource):
        src = cls(str(path), toy.filter_names, [])
        opened.append(src)
        return src

    yield open_
    for src in opened:
        src.close()


def _rows(toy):
    rng = np.random.default_rng(0)
    flux, unc, _ = toy.noise.sample(toy.phot(rng.random((10, 2))), rng)
    flux, unc = flux.astype(object), unc.astype(object)
    flux[1, 2] = ""            # one band missing: fine
    flux[3, 0] = "abc"         # non-numeric: flagged
    flux[5, :] = ""            # every band missing: flagged
    return flux, unc


def _write_csv(path, toy, flux, unc):
    cols = [f"{f}_flux" for f in toy.filter_names] + [f"{f}_unc" for f in toy.filter_names]
    with open(path, "w") as fh:
        fh.write(",".join(["id"] + cols) + "\n")
        for i in range(len(flux)):
            fh.write(",".join([str(i)] + [str(v) for v in flux[i]] + [str(v) for v in unc[i]]) + "\n")
    return path


def _numeric(flux):
    out = np.full(flux.shape, np.nan)
    for idx, v in np.ndenumerate(flux):
        try:
            out[idx] = float(v)
        except ValueError:
            pass
    return out


def test_csv_catalogue_with_missing_and_bad_rows(trained, tmp_path, source):
    toy, ck_path, ck = trained
    flux, unc = _rows(toy)
    src = source(_write_csv(tmp_path / "c.csv", toy, flux, unc), toy)
    out = infer(ck, ck_path, src, str(tmp_path / "post.h5"), INFER, quiet=True)
    with h5py.File(out) as h5:
        s, flags = h5["samples"][:], h5["flags"][:]
        assert s.shape == (10, 50, 2) and s.dtype == np.float32
        assert flags[3] == FLAGS["bad_value"] and flags[5] == FLAGS["no_bands"]
        assert flags[[0, 1, 2, 4, 6, 7, 8, 9]].sum() == 0
        assert np.isnan(s[[3, 5]]).all() and np.isnan(h5["median"][3]).all()
        good = np.delete(np.arange(10), [3, 5])
        assert np.all((s[good] >= 0) & (s[good] <= 1))
        assert np.all(h5["p16"][good] <= h5["median"][good])
        assert h5["batches_done"][:].all()
        assert [x.decode() for x in h5.attrs["param_labels"]] == ["t0", "t1"]
    assert not (tmp_path / "post.h5.part").exists()


def test_a_missing_band_gives_the_posterior_without_that_band(trained, tmp_path, source):
    """Rows without band 2 get the analytic posterior of bands 0 and 1 alone (sd 0.05 per
    parameter), not that of a zero flux in band 2 (about 10 sd away); rows with it, the
    posterior of all three (sd 0.041)."""
    toy, ck_path, ck = trained
    rng = np.random.default_rng(4)
    flux, unc, _ = toy.noise.sample(toy.phot(0.3 + 0.4 * rng.random((20, 2))), rng)
    cat = flux.astype(object)
    cat[:10, 2] = ""
    out = infer(ck, ck_path, source(_write_csv(tmp_path / "c.csv", toy, cat, unc), toy),
                str(tmp_path / "p.h5"), dict(INFER, n_draws=2000), quiet=True)
    with h5py.File(out) as h5:
        med, lo, hi, flags = h5["median"][:], h5["p16"][:], h5["p84"][:], h5["flags"][:]
    assert not flags.any()
    for rows, present in ((slice(0, 10), [True, True, False]), (slice(10, 20), None)):
        mu = np.array([toy.posterior(f, present)[0] for f in flux[rows]])
        sd = np.sqrt(np.diag(toy.posterior(flux[0], present)[1]))
        assert np.all(np.abs(med[rows] - mu).mean(0) / sd < 0.4), present
        np.testing.assert_allclose(((hi - lo)[rows] / (2 * sd)).mean(0), 1.0, atol=0.25)


def test_hdf5_and_fits_catalogues_give_the_same_draws(trained, tmp_path, source):
    toy, ck_path, ck = trained
    flux, unc = _rows(toy)
    flux = _numeric(flux)
    unc = unc.astype(float)
    cols = {f"{f}_flux": flux[:, b] for b, f in enumerate(toy.filter_names)}
    cols.update({f"{f}_unc": unc[:, b] for b, f in enumerate(toy.filter_names)})
    with h5py.File(tmp_path / "c.h5", "w") as h5:
        for k, v in cols.items():
            h5[k] = v
    table = np.zeros(10, dtype=[(k, "f8") for k in cols])
    for k, v in cols.items():
        table[k] = v
    with h5py.File(tmp_path / "t.h5", "w") as h5:
        h5["catalog"] = table
    from astropy.table import Table
    Table(cols).write(tmp_path / "c.fits")
    results = []
    for name in ("c.h5", "t.h5", "c.fits"):
        src = source(tmp_path / name, toy)
        out = infer(ck, ck_path, src, str(tmp_path / f"{name}.post.h5"), INFER, quiet=True)
        with h5py.File(out) as h5:
            results.append((h5["samples"][:], h5["flags"][:]))
    for s, f in results[1:]:
        np.testing.assert_array_equal(s, results[0][0])
        np.testing.assert_array_equal(f, results[0][1])
    # a NaN band is missing: row 3 misses band 0, which training never left out
    assert results[0][1][5] == FLAGS["no_bands"]
    assert results[0][1][3] == FLAGS["unseen_missing"]


def test_interrupted_inference_resumes_to_the_same_file(trained, tmp_path, source):
    toy, ck_path, ck = trained
    flux, unc = _rows(toy)
    csv = _write_csv(tmp_path / "c.csv", toy, flux, unc)
    ref = infer(ck, ck_path, source(csv, toy), str(tmp_path / "ref.h5"),
                INFER, quiet=True)

    class Dies(CatalogSource):
        def read(self, start, stop):
            if start >= 8:
                raise KeyboardInterrupt
            return super().read(start, stop)

    out = str(tmp_path / "post.h5")
    with pytest.raises(KeyboardInterrupt):
        infer(ck, ck_path, source(csv, toy, Dies), out, INFER, quiet=True)
    with h5py.File(out + ".part") as h5:
        assert h5["batches_done"][:].tolist() == [True, True, False]
    # rerun without --resume: refused, the interrupted run's batches kept
    with pytest.raises(UsageError, match=r"interrupted --infer run; pass --resume .*--overwrite"):
        infer(ck, ck_path, source(csv, toy), out, INFER, quiet=True)
    with h5py.File(out + ".part") as h5:
        assert h5["batches_done"][:].tolist() == [True, True, False]
    with pytest.raises(UsageError, match="--resume"):
        infer(ck, ck_path, source(csv, toy), out,
              dict(INFER, n_draws=20), resume=True, quiet=True)
    infer(ck, ck_path, source(csv, toy), out, INFER, resume=True,
          quiet=True)
    with h5py.File(ref) as a, h5py.File(out) as b:
        for key in ("samples", "median", "p2_5", "p97_5", "flags", "missing", "id"):
            np.testing.assert_array_equal(a[key][:], b[key][:])
        for name in a["summary"].dtype.names:
            np.testing.assert_array_equal(a["summary"][name], b["summary"][name])
    with pytest.raises(UsageError, match="exists"):
        infer(ck, ck_path, source(csv, toy), out, INFER, quiet=True)
    # --resume of a complete run with --summary: the table written from it, nothing redone
    table = str(tmp_path / "post.csv")
    assert infer(ck, ck_path, source(csv, toy), out, dict(INFER, summary=table), resume=True,
                 quiet=True) == out
    from astropy.table import Table
    np.testing.assert_allclose(Table.read(table)["t0_p97_5"], Table.read(out)["t0_p97_5"],
                               rtol=1e-6)


def test_compiled_inference_gives_the_same_draws(trained, tmp_path, source, caplog,
                                                 monkeypatch):
    from prospect_sim.amortized.coupling import CouplingSplineFlow
    toy, ck_path, ck = trained
    flux, unc = _rows(toy)
    csv = _write_csv(tmp_path / "c.csv", toy, flux, unc)
    opts = dict(INFER, infer_batch=2)  # batches 0, 3 and 4 whole (compiled); 1, 2 eager
    a = infer(ck, ck_path, source(csv, toy), str(tmp_path / "a.h5"), opts, quiet=True)
    blocks, real = [], CouplingSplineFlow._sample_blocks

    def counted(self, c, *args):
        blocks.append(c.shape[0])
        return real(self, c, *args)

    monkeypatch.setattr(CouplingSplineFlow, "_sample_blocks", counted)
    b = infer(ck, ck_path, source(csv, toy), str(tmp_path / "b.h5"), dict(opts, compile=True),
              quiet=True)
    assert blocks == [2, 1, 1, 2, 2]  # good rows per batch
    with h5py.File(a) as ha, h5py.File(b) as hb:
        np.testing.assert_allclose(hb["samples"][:], ha["samples"][:], rtol=0, atol=1e-4)
        np.testing.assert_array_equal(hb["flags"][:], ha["flags"][:])
    assert "--compile failed" not in caplog.text


def test_bfloat16_inference_is_close_and_recorded(trained, tmp_path, source):
    """--bfloat16: the same posteriors to a small fraction of their widths, the choice
    written in the output; refused with --importance, whose weights need the density."""
    toy, ck_path, ck = trained
    flux, unc = _rows(toy)
    csv = _write_csv(tmp_path / "c.csv", toy, flux, unc)
    opts = dict(INFER, n_draws=400)
    a = infer(ck, ck_path, source(csv, toy), str(tmp_path / "a.h5"), opts, quiet=True)
    b = infer(ck, ck_path, source(csv, toy), str(tmp_path / "b.h5"), dict(opts, bfloat16=True),
              quiet=True)
    with h5py.File(a) as ha, h5py.File(b) as hb:
        assert hb.attrs["bfloat16"] and "bfloat16" not in ha.attrs
        np.testing.assert_array_equal(hb["flags"][:], ha["flags"][:])
        good = ha["flags"][:] == 0
        width = (ha["p84"][:] - ha["p16"][:])[good]
        assert np.all(np.abs(hb["median"][:] - ha["median"][:])[good] < 0.05 * width)
    rw = Reweighter(None, None, None, ck["problem"], predict=lambda m, s, o, th: (toy.phot(th), {}))
    with pytest.raises(UsageError, match="--bfloat16 cannot be used with --importance"):
        infer(ck, ck_path, source(csv, toy), str(tmp_path / "c.h5"), dict(opts, bfloat16=True),
              reweighter=rw, quiet=True)


_H5_FLUSH_FAILED = ("Unable to synchronously flush file (file write failed: time = Mon Dec  7 "
                    "13:01:09 2026\n, filename = 'x.part', file descriptor = 3, errno = 28, "
                    "error message = 'No space left on device', buf = 0x5581, total write "
                    "size = 1216, bytes this sub-write = 1216, offset = 2097152)")



@pytest.mark.parametrize("where", ["write", "flush", "statvfs"])
def test_a_full_disk_while_writing_a_batch_keeps_the_others(trained, tmp_path, source,
                                                            monkeypatch, capsys, package_log_off_stderr, where):
    """ENOSPC while writing batch 2's samples (h5py's OSError), while flushing batch 1
    (h5py's RuntimeError, as on a real full disk), or seen by the free-space check
    before batch 2: one line naming the .part and the cause (exit 2 through the CLI),
    the file closed cleanly and readable, the finished batches marked done, and
    --resume gives the uninterrupted run's file."""
    import errno
    from types import SimpleNamespace

    from prospect_sim import cli
    toy, ck_path, ck = trained
    flux, unc = _rows(toy)
    csv = _write_csv(tmp_path / "c.csv", toy, flux, unc)
    ref = infer(ck, ck_path, source(csv, toy), str(tmp_path / "ref.h5"), INFER, quiet=True)
    calls = []

    def full(real, counts, fail_at, error=OSError(errno.ENOSPC, "No space left on device")):
        def patched(self, *args, **kw):
            if counts(self):
                calls.append(1)
                if len(calls) >= fail_at:
                    raise error
            return real(self, *args, **kw)
        return patched

    if where == "write":
        monkeypatch.setattr(h5py.Dataset, "__setitem__",
                            full(h5py.Dataset.__setitem__, lambda d: d.name == "/samples", 3))
    elif where == "flush":   # 2 flushes a batch: batch 1's second (its done mark) fails
        monkeypatch.setattr(h5py.File, "flush", full(h5py.File.flush, lambda f: True, 4,
                                                     RuntimeError(_H5_FLUSH_FAILED)))
    else:                    # 1 GiB free before batches 0 and 1, then 100 kB
        def statvfs(path):
            calls.append(1)
            return SimpleNamespace(f_bavail=2 ** 30 if len(calls) < 3 else 10 ** 5,
                                   f_frsize=1)
        monkeypatch.setattr(os, "statvfs", statvfs)
    out = str(tmp_path / "post.h5")
    with pytest.raises(InferenceError) as err:
        infer(ck, ck_path, source(csv, toy), out, INFER, quiet=True)
    monkeypatch.undo()
    assert len(calls) == {"write": 3, "flush": 4, "statvfs": 3}[where]
    assert f"cannot write posterior file {out}.part: No space left on device" in str(err.value)
    assert "--resume" in str(err.value)
    assert cli._fail(err.value, False) == 2
    line, = capsys.readouterr().err.splitlines()
    assert line.startswith("prospect_sim: error: cannot write posterior file")
    assert sorted(os.listdir(tmp_path)) == ["c.csv", "post.h5.part", "ref.h5"]
    with h5py.File(out + ".part") as h5:   # closed cleanly: opens, batches 0 and 1 done
        assert h5["batches_done"][:].tolist() == [True, True, False]
    infer(ck, ck_path, source(csv, toy), out, INFER, resume=True, quiet=True)
    with h5py.File(ref) as a, h5py.File(out) as b:
        for key in ("samples", "median", "p16", "p84", "flags"):
            np.testing.assert_array_equal(a[key][:], b[key][:])


def test_resume_of_a_damaged_part_file_is_one_line(trained, tmp_path, source):
    toy, ck_path, ck = trained
    flux, unc = _rows(toy)
    csv = _write_csv(tmp_path / "c.csv", toy, flux, unc)
    out = str(tmp_path / "post.h5")
    with open(out + ".part", "wb") as fh:
        fh.write(b"\x89HDF\r\n" + bytes(100))     # a truncated, unreadable file
    with pytest.raises(UsageError, match=r"--resume: cannot reopen .*post.h5.part .*--overwrite"):
        infer(ck, ck_path, source(csv, toy), out, INFER, resume=True, quiet=True)
    infer(ck, ck_path, source(csv, toy), out, INFER, overwrite=True, quiet=True)
    assert os.path.exists(out) and not os.path.exists(out + ".part")


def test_header_only_catalogue_is_one_line_and_leaves_nothing(trained, tmp_path, source,
                                                               capsys):
    from prospect_sim import cli
    toy, ck_path, ck = trained
    cat = _write_csv(tmp_path / "c.csv", toy, np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(InferenceError, match="has no rows") as err:
        infer(ck, ck_path, source(cat, toy), str(tmp_path / "p.h5"), INFER, quiet=True)
    assert sorted(os.listdir(tmp_path)) == ["c.csv"]        # no .part, no output
    assert cli._fail(err.value, False) == 2
    line, = capsys.readouterr().err.splitlines()
    assert line.startswith("prospect_sim: error: ") and "c.csv has no rows" in line


def test_catalogue_without_a_filter_is_an_error(trained, tmp_path, source):
    toy, _, _ = trained
    path = tmp_path / "c.csv"
    path.write_text("band0_flux,band0_unc\n1e-9,1e-10\n")
    with pytest.raises(InferenceError, match="band1_flux, band2_flux"):
        source(str(path), toy)
    with pytest.raises(InferenceError, match="no such file"):
        source(str(tmp_path / "none.csv"), toy)


def test_obs_source_and_summary_only(trained, tmp_path):
    toy, ck_path, ck = trained
    phot = toy.phot(np.array([[0.3, 0.6]]))[0]
    obs = {"maggies": phot, "maggies_unc": np.full(3, 5e-11), "phot_mask": np.ones(3, bool)}
    out = infer(ck, ck_path, ObsSource(obs, [], {}), str(tmp_path / "p.h5"),
                dict(INFER, n_draws=400, summary_only=True), quiet=True)
    with h5py.File(out) as h5:
        assert "samples" not in h5 and h5["median"].shape == (1, 2)
        assert h5.attrs["id_column"] == "" and h5["id"][:].tolist() == [0]
        # a net trained 3 epochs on 2,700 sims (accuracy is checked in test_amortized_calibration)
        np.testing.assert_allclose(h5["median"][0], [0.3, 0.6], atol=0.2)
    from astropy.table import Table
    table = Table.read(out)       # the summary table, also with --summary_only
    assert table["row"].tolist() == [0] and table["n_bands"][0] == 3
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(table["t1_median"], h5["median"][:, 1])
    with pytest.raises(InferenceError, match="--condition zred"):
        ObsSource(obs, ["zred"], {})


def test_importance_sampling_reports_ess_and_flags_outliers(trained, tmp_path, source, caplog,
                                                            package_log_off_stderr):
    from astropy.table import Table
    toy, ck_path, ck = trained
    rw = Reweighter(None, None, None, ck["problem"], predict=lambda m, s, o, th: (toy.phot(th), {}))
    rng = np.random.default_rng(1)
    flux, unc, _ = toy.noise.sample(toy.phot(0.2 + 0.6 * rng.random((8, 2))), rng)
    flux[7] = [5e-9, -5e-9, 5e-9]  # nothing like the training set
    cat = tmp_path / "c.csv"
    _write_csv(cat, toy, flux, unc)
    out = infer(ck, ck_path, source(str(cat), toy),
                str(tmp_path / "p.h5"), dict(INFER, n_draws=400, min_ess=100), reweighter=rw,
                quiet=True)
    with h5py.File(out) as h5:
        e, flags, med = h5["ess"][:], h5["flags"][:], h5["median"][:]
        assert h5["log_weights"].shape == (8, 400)
    assert np.all((e >= 1) & (e <= 400))
    # the fitted rows keep most of their 400 draws (about 350-390), the outlier 10%
    assert e[7] < 100 and flags[7] == FLAGS["low_ess"] and not flags[:7].any()
    assert "1 of 8 objects flagged" in caplog.text
    assert "1 with flag 8 (low_ess): importance-sampling ESS below --min_ess 100" in caplog.text
    np.testing.assert_array_equal(Table.read(out)["ess"], e)
    mu = np.array([toy.posterior(f)[0] for f in flux[:7]])
    sd = np.sqrt(np.diag(toy.posterior(flux[0])[1]))
    assert np.all(np.abs(med[:7] - mu).mean(0) < 0.5 * sd)


def test_wider_proposal_still_gives_the_analytic_posterior(trained, tmp_path, source):
    """--proposal_scale 1.5: draws from a wider flow, weights against its own density."""
    toy, ck_path, ck = trained
    rw = Reweighter(None, None, None, ck["problem"], predict=lambda m, s, o, th: (toy.phot(th), {}))
    rng = np.random.default_rng(2)
    flux, unc, _ = toy.noise.sample(toy.phot(0.2 + 0.6 * rng.random((6, 2))), rng)
    cat = tmp_path / "c.csv"
    _write_csv(cat, toy, flux, unc)
    opts = dict(INFER, n_draws=8000, proposal_scale=1.5)
    out = infer(ck, ck_path, source(str(cat), toy), str(tmp_path / "p.h5"), opts,
                reweighter=rw, quiet=True)
    with h5py.File(out) as h5:
        med, lo, hi = h5["median"][:], h5["p16"][:], h5["p84"][:]
        assert h5.attrs["proposal_scale"] == 1.5
    for f, m, a, b in zip(flux, med, lo, hi):
        mu, cov = toy.posterior(f)
        sd = np.sqrt(np.diag(cov))
        assert np.all(np.abs(m - mu) < 0.25 * sd)
        assert np.all(np.abs((b - a) / (2 * sd) - 1) < 0.25)
    with pytest.raises(UsageError, match="--importance only"):
        infer(ck, ck_path, source(str(cat), toy), str(tmp_path / "q.h5"), opts, quiet=True)


def test_defensive_mixture_density_is_normalised(trained):
    """E over the mixture of q_flow / q_mix is 1 (each term <= 2): log q_mix is a density."""
    import torch
    from prospect_sim.amortized.posterior import AmortizedPosterior
    toy, _, ck = trained
    post = AmortizedPosterior.from_checkpoint(ck)
    rng = np.random.default_rng(5)
    flux, unc, missing = toy.noise.sample(toy.phot(np.array([[0.4, 0.5], [0.7, 0.2]])), rng)
    x = post.features(flux, unc, missing, None)
    with torch.no_grad():
        u, log_mix = post._sample_mixture(x, 40000, torch.Generator().manual_seed(1), 2.0)
        log_flow = post.net.log_prob(u, x.expand(40000, *x.shape))
    ratio = torch.exp(log_flow - log_mix).mean(0).numpy()
    np.testing.assert_allclose(ratio, 1.0, atol=0.02)


def test_weight_helpers():
    assert ess(np.zeros((1, 10)))[0] == pytest.approx(10)
    assert ess(np.array([[0.0, -np.inf, -np.inf]]))[0] == pytest.approx(1)
    x = np.arange(5.0).reshape(1, 5, 1)
    q = weighted_quantiles(x, np.log(np.array([[1, 1, 1, 1, 1e-12]])), [0.5])
    assert q[0, 0, 0] == 1.0 or q[0, 0, 0] == 2.0


def _noise_model_case(with_noise):
    """A Prospector model with a fixed uncertainty factor of 2 and, optionally, the
    phot_noise model that applies it (Prospector's Uncorrelated kernel)."""
    from prospect.likelihood import NoiseModel
    from prospect.likelihood.kernels import Uncorrelated
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    from sedpy.observate import load_filters
    params = TemplateLibrary["parametric_sfh"]
    params["unc_factor"] = dict(N=1, isfree=False, init=2.0)
    model = SpecModel(params)
    obs = {"filters": load_filters(["decam_g", "decam_r", "decam_i"])}
    noise = (None, NoiseModel(kernels=[Uncorrelated(parnames=["unc_factor"])],
                              metric_name="filternames", weight_by=["phot_unc"]))
    problem = {"theta_labels": list(model.theta_labels()), "prior": {}}

    def predict(model, sps, obs, theta):  # a stand-in for the sps: smooth in theta
        return 1e-9 * (1 + 0.1 * np.tanh(theta[:, :1] / theta[:, :1].mean()
                                         * np.arange(1, 4))), None

    return Reweighter(model, None, obs, problem, predict=predict,
                      noise=noise if with_noise else None), model


def test_importance_applies_the_param_files_phot_noise():
    """With build_noise's phot_noise (uncertainties x 2), the weights are the classical
    fit's lnlike_phot: the chi-square with doubled uncertainties, up to a constant per
    object (the Gaussian normalisation). Without it, the plain chi-square."""
    rw_noise, model = _noise_model_case(True)
    rw_plain, _ = _noise_model_case(False)
    assert rw_noise.exact and not rw_plain.exact
    rng = np.random.default_rng(0)
    theta = np.tile(model.theta, (2, 6, 1))
    theta[..., 0] *= rng.uniform(0.5, 2.0, size=(2, 6))  # mass
    flux, unc = np.full((2, 3), 1.05e-9), np.full((2, 3), 2e-11)
    missing = np.zeros((2, 3), bool)
    missing[1, 2] = True
    log_q = np.zeros((2, 6))
    with_noise = rw_noise.log_weights(theta, log_q, flux, unc, missing)
    doubled = rw_plain.log_weights(theta, log_q, flux, 2 * unc, missing)
    plain = rw_plain.log_weights(theta, log_q, flux, unc, missing)
    diff = with_noise - doubled
    np.testing.assert_allclose(diff - diff[:, :1], 0, atol=1e-8)
    assert np.ptp(plain - doubled, axis=1).min() > 1.0  # the noise model matters here


def test_importance_predicts_in_bounded_pieces(trained, monkeypatch):
    """Objects x draws go to the forward model a bounded number of rows at a time."""
    import prospect_sim.amortized.importance as imp
    toy, _, ck = trained
    rows = []

    def predict(m, s, o, th):
        rows.append(len(th))
        return toy.phot(th), {}

    rng = np.random.default_rng(2)
    theta = 0.2 + 0.6 * rng.random((3, 50, 2))
    flux, unc, missing = toy.noise.sample(toy.phot(theta[:, 0]), rng)
    log_q = np.zeros((3, 50))
    whole = Reweighter(None, None, None, ck["problem"], predict=predict).log_weights(
        theta, log_q, flux, unc, missing)
    assert rows == [150]
    monkeypatch.setattr(imp, "PREDICT_ROWS", 40)
    rows.clear()
    pieces = Reweighter(None, None, None, ck["problem"], predict=predict).log_weights(
        theta, log_q, flux, unc, missing)
    assert rows == [40, 40, 40, 30]
    np.testing.assert_array_equal(pieces, whole)


# --- ids, kept columns, summary table, magnitudes, column maps, honest flags ---------------

def _grid_catalogue(toy, order):
    """Noiseless rows on a 4 x 4 grid of theta (spacing 0.15; a posterior sd is 0.04), in
    ``order``, with ids that are not the row numbers; returns (theta, flux, unc, ids)."""
    g = np.linspace(0.25, 0.7, 4)
    theta = np.array([[a, b] for a in g for b in g])[order]
    flux = toy.phot(theta)
    unc = np.full(flux.shape, toy.sigma * toy.scale)
    ids = 1000 + 7 * np.asarray(order)       # the id follows its object, not the row
    return theta, flux, unc, ids


def _text(v):
    return repr(float(v)) if isinstance(v, (float, np.floating)) else str(v)


def _write_table_csv(path, toy, ids, flux, unc, extra=None, names=None):
    names = names or ([f"{f}_flux" for f in toy.filter_names]
                      + [f"{f}_unc" for f in toy.filter_names])
    extra = extra or {}
    with open(path, "w") as fh:
        fh.write(",".join(["objid", *extra, *names]) + "\n")
        for i in range(len(flux)):
            vals = [str(ids[i])] + [str(v[i]) for v in extra.values()]
            fh.write(",".join(vals + [_text(v) for v in flux[i]]
                              + [_text(v) for v in unc[i]]) + "\n")
    return str(path)


def test_ids_and_kept_columns_follow_their_rows_when_shuffled(trained, tmp_path, source):
    """The same 16 objects in two orders: each row's id and kept columns are its own, and
    its posterior is that of its own object (median within 0.05 of its theta, grid
    spacing 0.15)."""
    toy, ck_path, ck = trained
    results = {}
    for name, order in (("sorted", np.arange(16)),
                        ("shuffled", np.random.default_rng(5).permutation(16))):
        theta, flux, unc, ids = _grid_catalogue(toy, order)
        extra = {"name": [f"gal-{i:03d}" for i in ids], "ra": 150.0 + 0.01 * ids}
        csv = _write_table_csv(tmp_path / f"{name}.csv", toy, ids, flux, unc, extra)
        src = CatalogSource(csv, toy.filter_names, [], keep_columns=["ra", "name"])
        try:
            out = infer(ck, ck_path, src, str(tmp_path / f"{name}.h5"), INFER, quiet=True)
        finally:
            src.close()
        with h5py.File(out) as h5:
            assert h5.attrs["id_column"] == "objid"             # found by default
            assert h5["id"].dtype == np.int64 and h5["id"][:].tolist() == ids.tolist()
            np.testing.assert_array_equal(h5["columns"]["ra"][:], extra["ra"])
            assert h5["columns"]["name"].asstr()[:].tolist() == extra["name"]
            med = h5["median"][:]
        assert np.all(np.abs(med - theta) < 0.05), np.abs(med - theta).max()
        results[name] = dict(zip(ids.tolist(), med))
    for i, m in results["sorted"].items():   # same object, same posterior (other draws)
        np.testing.assert_allclose(results["shuffled"][i], m, atol=0.03)
    # --id_column picks another column; text ids stay text
    theta, flux, unc, ids = _grid_catalogue(toy, np.arange(16))
    csv = _write_table_csv(tmp_path / "n.csv", toy, ids, flux, unc,
                           {"name": [f"gal-{i:03d}" for i in ids]})
    out = infer(ck, ck_path, source(csv, toy, lambda p, f, c: CatalogSource(
        p, f, c, id_column="name")), str(tmp_path / "n.h5"), INFER, quiet=True)
    with h5py.File(out) as h5:
        assert h5.attrs["id_column"] == "name"
        assert h5["id"].asstr()[:].tolist() == [f"gal-{i:03d}" for i in ids]
    with pytest.raises(UsageError, match="--id_column nope: no such column"):
        CatalogSource(csv, toy.filter_names, [], id_column="nope")
    with pytest.raises(InferenceError, match="no column dec"):
        CatalogSource(csv, toy.filter_names, [], keep_columns=["dec"])
    # a kept column named as one of the summary's own is refused before any work
    csv = _write_table_csv(tmp_path / "m.csv", toy, ids, flux, unc, {"t0_median": ids})
    src = source(csv, toy, lambda p, f, c: CatalogSource(p, f, c, keep_columns=["t0_median"]))
    with pytest.raises(UsageError, match="t0_median would be two columns"):
        infer(ck, ck_path, src, str(tmp_path / "m.h5"), INFER, quiet=True)
    assert not os.path.exists(tmp_path / "m.h5.part")


def test_summary_table_opens_with_astropy_and_equals_the_hdf5(trained, tmp_path, source):
    from astropy.table import Table
    toy, ck_path, ck = trained
    flux, unc = _rows(toy)
    ids = np.random.default_rng(2).permutation(10) + 500
    csv = _write_table_csv(tmp_path / "c.csv", toy, ids, flux, unc, {"ra": 10.0 + ids})
    out = str(tmp_path / "p.h5")
    infer(ck, ck_path, source(csv, toy, lambda p, f, c: CatalogSource(
        p, f, c, keep_columns=["ra"])), out, dict(INFER, summary=str(tmp_path / "s.fits")),
        quiet=True)
    table = Table.read(out)                    # no path: /summary is the file's only table
    with h5py.File(out) as h5:
        assert table.colnames == ["objid", "ra"] + [
            f"{p}_{q}" for p in ("t0", "t1") for q in ("median", "p2_5", "p16", "p84",
                                                       "p97_5")] + ["ess", "n_bands", "flags"]
        assert table["objid"].tolist() == ids.tolist() == h5["id"][:].tolist()
        for j, p in enumerate(("t0", "t1")):
            for q in ("median", "p2_5", "p16", "p84", "p97_5"):
                np.testing.assert_array_equal(table[f"{p}_{q}"], h5[q][:, j])
        np.testing.assert_array_equal(table["flags"], h5["flags"][:])
        assert table["n_bands"].tolist() == (3 - h5["missing"][:].sum(1)).tolist()
        assert np.isnan(table["ess"]).all()            # no --importance
        good = h5["flags"][:] == 0
        for lo, hi in (("p2_5", "p16"), ("p16", "median"), ("median", "p84"), ("p84", "p97_5")):
            assert np.all(h5[lo][good] <= h5[hi][good])
    assert table["n_bands"][1] == 2 and table["flags"][5] == FLAGS["no_bands"]
    fits = Table.read(tmp_path / "s.fits")
    assert fits.colnames == table.colnames
    for c in table.colnames:
        np.testing.assert_array_equal(fits[c], table[c])
    # CSV on request too, and not over an existing file without --overwrite
    out2 = str(tmp_path / "p2.h5")
    infer(ck, ck_path, source(csv, toy), out2, dict(INFER, summary=str(tmp_path / "s.csv")),
          quiet=True)
    text = Table.read(tmp_path / "s.csv")
    np.testing.assert_allclose(text["t1_median"], Table.read(out2)["t1_median"], rtol=1e-6)
    with pytest.raises(UsageError, match="s.csv"):
        infer(ck, ck_path, source(csv, toy), str(tmp_path / "p3.h5"),
              dict(INFER, summary=str(tmp_path / "s.csv")), quiet=True)
    with pytest.raises(UsageError, match="unknown table type '.txt'"):
        infer(ck, ck_path, source(csv, toy), str(tmp_path / "p3.h5"),
              dict(INFER, summary=str(tmp_path / "s.txt")), quiet=True)
    assert not os.path.exists(tmp_path / "p3.h5")


def test_magnitudes_give_the_same_posteriors_as_fluxes(trained, tmp_path, source):
    """AB magnitudes (<filter>_mag, <filter>_magerr) in place of maggies: the same draws
    to float rounding; a magnitude of 99 is a missing band, like an empty flux."""
    toy, ck_path, ck = trained
    rng = np.random.default_rng(8)
    flux, unc, _ = toy.noise.sample(toy.phot(rng.random((6, 2))), rng)
    assert (flux > 0).all()
    mag, magerr = -2.5 * np.log10(flux), unc / (0.4 * np.log(10) * flux)
    mag[2, 2] = 99.0
    fcat = flux.astype(object)
    fcat[2, 2] = ""
    a = infer(ck, ck_path, source(_write_csv(tmp_path / "f.csv", toy, fcat, unc), toy),
              str(tmp_path / "f.h5"), INFER, quiet=True)
    names = [f"{f}_mag" for f in toy.filter_names] + [f"{f}_magerr" for f in toy.filter_names]
    m = _write_table_csv(tmp_path / "m.csv", toy, np.arange(6), mag, magerr, names=names)
    b = infer(ck, ck_path, source(m, toy), str(tmp_path / "m.h5"), INFER, quiet=True)
    with h5py.File(a) as ha, h5py.File(b) as hb:
        assert hb["missing"][2].tolist() == [False, False, True]
        np.testing.assert_array_equal(hb["missing"][:], ha["missing"][:])
        np.testing.assert_allclose(hb["samples"][:], ha["samples"][:], rtol=0, atol=1e-5)


def test_a_column_map_names_the_catalogues_own_columns(trained, tmp_path, source):
    import json

    from prospect_sim.amortized.catalog import load_column_map
    toy, ck_path, ck = trained
    flux, unc = _rows(toy)
    plain = _write_csv(tmp_path / "plain.csv", toy, flux, unc)
    own = [f"FLUX_{b}" for b in range(3)] + [f"ERR_{b}" for b in range(3)]
    renamed = _write_table_csv(tmp_path / "own.csv", toy, np.arange(10), flux, unc, names=own)
    cmap = {f"{f}_{s}": f"{s.upper().replace('UNC', 'ERR')}_{b}"
            for b, f in enumerate(toy.filter_names) for s in ("flux", "unc")}
    (tmp_path / "map.json").write_text(json.dumps(cmap))
    loaded = load_column_map(str(tmp_path / "map.json"))
    assert loaded == cmap
    with pytest.raises(InferenceError, match="lacks the columns band0_flux"):
        CatalogSource(renamed, toy.filter_names, [])
    a = infer(ck, ck_path, source(plain, toy), str(tmp_path / "a.h5"), INFER, quiet=True)
    b = infer(ck, ck_path, source(renamed, toy, lambda p, f, c: CatalogSource(
        p, f, c, column_map=loaded)), str(tmp_path / "b.h5"), INFER, quiet=True)
    with h5py.File(a) as ha, h5py.File(b) as hb:
        np.testing.assert_array_equal(hb["samples"][:], ha["samples"][:])
        np.testing.assert_array_equal(hb["flags"][:], ha["flags"][:])
    with pytest.raises(UsageError, match="unknown name band9_flux"):
        CatalogSource(renamed, toy.filter_names, [], column_map={"band9_flux": "FLUX_0"})
    with pytest.raises(InferenceError, match="no column band0_flux -> F0"):
        CatalogSource(renamed, toy.filter_names, [], column_map={"band0_flux": "F0"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError, match="is not JSON"):
        load_column_map(str(tmp_path / "bad.json"))


def test_a_band_never_missing_in_training_is_flagged_and_counted(trained, tmp_path, source,
                                                                 caplog,
                                                                 package_log_off_stderr):
    """The flow learnt band 2 missing (p_missing 0.3) but never band 0 or 1: rows with a
    gap in band 0 or 1 are still inferred but flagged unseen_missing, those with a gap
    in band 2 are not; the end of the run counts the flagged rows by reason."""
    import logging
    toy, ck_path, ck = trained
    assert ck["noise"]["p_missing"] == P_MISSING
    rng = np.random.default_rng(9)
    flux, unc, _ = toy.noise.sample(toy.phot(rng.random((12, 2))), rng)
    flux = flux.astype(object)
    flux[[0, 1, 2], 2] = ""      # seen in training
    flux[[3, 4], 0] = ""         # never seen
    flux[5, 1] = "nan"           # never seen
    flux[6, 0] = "x"             # a bad value: not inferred
    flux[7, :] = ""              # no band: not inferred
    with caplog.at_level(logging.INFO, logger="prospect_sim"):
        out = infer(ck, ck_path, source(_write_csv(tmp_path / "c.csv", toy, flux, unc), toy),
                    str(tmp_path / "p.h5"), INFER, quiet=True)
    with h5py.File(out) as h5:
        flags, med = h5["flags"][:], h5["median"][:]
    unseen = FLAGS["unseen_missing"]
    assert flags.tolist() == [0, 0, 0, unseen, unseen, unseen, FLAGS["bad_value"],
                              FLAGS["no_bands"], 0, 0, 0, 0]
    assert np.isfinite(med[:6]).all() and np.isnan(med[6:8]).all()
    text = caplog.text
    assert "5 of 12 objects flagged" in text
    assert "3 with flag 16 (unseen_missing)" in text and "band0 missing in 2" in text
    assert "band1 missing in 1" in text and "band2 missing" not in text
    assert "1 with flag 1 (bad_value)" in text and "1 with flag 2 (no_bands)" in text
    assert "low_ess" not in text


def test_an_empirical_noise_model_learns_the_catalogues_missing_fractions(trained, tmp_path):
    """Training on a catalogue-driven noise model (EmpiricalNoise.from_catalog) makes the
    catalogue's gaps seen: its p_missing are the catalogue's missing fractions by default."""
    from prospect_sim.amortized.noise import EmpiricalNoise
    toy = trained[0]
    rng = np.random.default_rng(3)
    flux, unc, _ = toy.noise.sample(toy.phot(rng.random((40, 2))), rng)
    flux = flux.astype(object)
    flux[:4, 0] = ""                      # 10% of band 0 missing, 25% of band 2
    flux[10:20, 2] = "nan"
    model = EmpiricalNoise.from_catalog(_write_csv(tmp_path / "c.csv", toy, flux, unc),
                                        toy.filter_names, k=5)
    np.testing.assert_allclose(model.p_missing, [0.1, 0.0, 0.25])


@pytest.mark.parametrize("n", [7, 50, 1000])
def test_quantiles_from_one_sort_are_numpys(n):
    """The percentiles written without --importance: np.quantile's exactly (its linear
    interpolation, from one sort: 10x faster)."""
    from prospect_sim.amortized.infer import _quantiles
    x = np.random.default_rng(n).normal(size=(20, n, 3)).astype(np.float32)
    qs = [0.025, 0.16, 0.5, 0.84, 0.975]
    np.testing.assert_array_equal(_quantiles(x, qs), np.quantile(x, qs, axis=1))
