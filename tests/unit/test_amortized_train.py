"""Training: streaming data, resume identity, checkpoints and bad input."""

import csv
import json

import h5py
import numpy as np
import pytest
import torch

from prospect_sim.amortized.data import SimulationData
from prospect_sim.amortized.posterior import AmortizedPosterior, load_checkpoint
from prospect_sim.amortized.toy import LinearGaussianToy
from prospect_sim.amortized.train import best_path, log_path, train
from prospect_sim.errors import TrainingError, UsageError

TINY = dict(epochs=2, batch_size=64, hidden=8, transforms=1, bins=4, embedding="8",
            embed_dim=4, n_test=50, val_fraction=0.2, block_rows=100, shuffle_blocks=2,
            validate_after_train=False)


@pytest.fixture
def toy():
    return LinearGaussianToy()


@pytest.fixture
def simfile(toy, tmp_path):
    return toy.write_simfile(str(tmp_path / "sims.h5"), 1000, n_bad=7, chunk_size=250)


def test_data_streams_every_training_row_once(simfile):
    with SimulationData(simfile, val_fraction=0.2, n_test=50, block_rows=64) as data:
        assert data.n_dropped == 7 and data.n_nonfinite == 7
        assert sum(data.counts.values()) == data.n_good == 993
        seen = np.concatenate([t for t, _ in data.batches("train", 50, np.random.default_rng(0), 3)])
        assert len(seen) == data.counts["train"]
        assert len(np.unique(seen[:, 0])) == len(seen)  # no repeats
        assert np.isfinite(seen).all()
        again = np.concatenate([t for t, _ in data.batches("train", 50, np.random.default_rng(0), 3)])
        np.testing.assert_array_equal(seen, again)  # the order depends only on the generator
        val = np.concatenate([t for t, _ in data.batches("val", 50)])
        assert len(val) == data.counts["val"]
        assert not set(val[:, 0]) & set(seen[:, 0])


def test_unfinished_chunks_are_skipped(simfile):
    with h5py.File(simfile, "a") as h5:
        h5["chunks_done"][3] = False
        n_nan = int(np.isnan(h5["phot"][:750, 0]).sum())
    with SimulationData(simfile) as data:
        assert data.n_good == 750 - n_nan


def _same_weights(ca, cb):
    return all(torch.equal(ca["model_state"][k], cb["model_state"][k]) for k in ca["model_state"])


def test_resume_continues_exactly(toy, simfile, tmp_path, caplog):
    """The part after the interruption is asked for another --train_seed: a resume that
    continues gives the uninterrupted run's weights, one that started again would give
    the weights of a fresh run with that seed."""
    a = str(tmp_path / "a.pt")
    train(simfile, toy.problem, toy.noise, a, dict(TINY, epochs=2), quiet=True)
    fresh = str(tmp_path / "fresh.pt")
    train(simfile, toy.problem, toy.noise, fresh, dict(TINY, epochs=2, train_seed=1), quiet=True)
    b = str(tmp_path / "b.pt")
    train(simfile, toy.problem, toy.noise, b, dict(TINY, epochs=1), quiet=True)
    assert load_checkpoint(b)["epoch"] == 1
    train(simfile, toy.problem, toy.noise, b, dict(TINY, epochs=2, train_seed=1), resume=True,
          quiet=True)
    assert "--resume keeps the checkpoint's train_seed" in caplog.text
    ca, cb, cf = load_checkpoint(a), load_checkpoint(b), load_checkpoint(fresh)
    assert cb["epoch"] == 2 and cb["options"]["train_seed"] == 0
    assert not _same_weights(ca, cf)  # the seed matters, so the comparison below can fail
    for key in ca["model_state"]:
        torch.testing.assert_close(ca["model_state"][key], cb["model_state"][key], rtol=0, atol=0)
    assert [r["val_loss"] for r in ca["history"]] == [r["val_loss"] for r in cb["history"]]
    with open(log_path(b)) as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2]


def test_cosine_schedule_anneals_and_resumes_exactly(toy, simfile, tmp_path, monkeypatch):
    from prospect_sim.amortized import train as train_mod
    opts = dict(TINY, epochs=3, lr=2e-3, lr_schedule="cosine")
    a = str(tmp_path / "a.pt")
    train(simfile, toy.problem, toy.noise, a, opts, quiet=True)
    lrs = [r["lr"] for r in load_checkpoint(a)["history"]]
    floor = 2e-3 * 1e-2
    expected = [floor + (2e-3 - floor) * (1 + np.cos(np.pi * e / 3)) / 2 for e in (1, 2, 3)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)
    # interrupted after its first epoch (as by Ctrl-C), then resumed
    real_epoch, calls = train_mod._Trainer.epoch, []

    def interrupted(self, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(self, *args, **kw)

    b = str(tmp_path / "b.pt")
    monkeypatch.setattr(train_mod._Trainer, "epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(simfile, toy.problem, toy.noise, b, opts, quiet=True)
    monkeypatch.setattr(train_mod._Trainer, "epoch", real_epoch)
    assert load_checkpoint(b)["epoch"] == 1
    # resumed with another --lr_schedule and --train_seed: the checkpoint's are kept
    train(simfile, toy.problem, toy.noise, b, dict(opts, lr_schedule="plateau", train_seed=1),
          resume=True, quiet=True)
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    for key in ca["model_state"]:
        torch.testing.assert_close(ca["model_state"][key], cb["model_state"][key], rtol=0, atol=0)
    assert [r["lr"] for r in cb["history"]] == lrs


def test_compiled_training_follows_eager_and_resumes_exactly(toy, simfile, tmp_path, caplog):
    """--compile changes the speed, not the training: same losses as eager to float32
    rounding, and an interrupted compiled run resumes to the same weights."""
    opts = dict(TINY, transforms=2)
    eager, comp = str(tmp_path / "eager.pt"), str(tmp_path / "comp.pt")
    train(simfile, toy.problem, toy.noise, eager, opts, quiet=True)
    train(simfile, toy.problem, toy.noise, comp, dict(opts, compile=True), quiet=True)
    he, hc = load_checkpoint(eager)["history"], load_checkpoint(comp)["history"]
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose([r[key] for r in hc], [r[key] for r in he], rtol=1e-4)
    b = str(tmp_path / "b.pt")
    train(simfile, toy.problem, toy.noise, b, dict(opts, epochs=1, compile=True), quiet=True)
    train(simfile, toy.problem, toy.noise, b, dict(opts, compile=True, train_seed=1), resume=True,
          quiet=True)  # another seed: ignored by a resume, not by a run started again
    ca, cb = load_checkpoint(comp), load_checkpoint(b)
    for key in ca["model_state"]:
        torch.testing.assert_close(ca["model_state"][key], cb["model_state"][key], rtol=0, atol=0)
    assert "--compile failed" not in caplog.text  # compiled, not fallen back to eager


def test_checkpoint_is_self_contained(toy, simfile, tmp_path):
    ck = str(tmp_path / "f.pt")
    train(simfile, toy.problem, toy.noise, ck, dict(TINY, condition=["t1"]), quiet=True)
    c = load_checkpoint(ck)
    assert c["problem"]["theta_labels"] == ["t0", "t1"] and c["labels"] == ["t0"]
    assert c["conditions"] == ["t1"] and c["problem"]["filter_names"] == toy.filter_names
    assert c["noise"]["kind"] == "fixed" and len(c["features"]["mean"]) == 3 * 3 + 2 + 1
    assert c["simfile"]["n_dropped"] == 7 and len(c["simfile"]["identity"]) == 64
    best = load_checkpoint(best_path(ck))
    post = AmortizedPosterior.from_checkpoint(best)
    theta, _ = post.sample(np.full((2, 3), 1e-9), np.full((2, 3), 5e-11), np.zeros((2, 3), bool),
                           np.full((2, 1), 0.5), 10)
    assert theta.shape == (2, 10, 1)


def _full_disk(monkeypatch, name, fail_at, path=None):
    """``os.<name>`` raises ENOSPC from its ``fail_at``-th call on (only calls whose
    destination is ``path`` count, when given): a disk that fills during training."""
    import errno
    import os
    real, calls = getattr(os, name), []

    def full(*args, **kw):
        if path is None or os.fspath(args[-1]) == path:
            calls.append(1)
            if len(calls) >= fail_at:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kw)

    monkeypatch.setattr(os, name, full)
    return calls


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_a_full_disk_while_saving_keeps_the_last_epoch(toy, simfile, tmp_path, monkeypatch,
                                                       capsys, package_log_off_stderr, where):
    """ENOSPC at the write (fsync) or at the rename of epoch 2's checkpoint: one line
    naming the checkpoint and the cause (exit 2 through the CLI), no temporary file
    left, epoch 1's checkpoint whole, and --resume (asked for another seed) continues
    to the uninterrupted run's weights."""
    import os

    from prospect_sim import cli
    opts = dict(TINY, epochs=3)
    a = str(tmp_path / "a.pt")
    train(simfile, toy.problem, toy.noise, a, opts, quiet=True)
    (tmp_path / "out").mkdir()
    b = str(tmp_path / "out" / "b.pt")
    # epoch 1 writes b.pt and b_best.pt (fsync calls 1, 2); epoch 2's b.pt is the 3rd
    calls = _full_disk(monkeypatch, where, 3) if where == "fsync" else \
        _full_disk(monkeypatch, where, 2, path=b)
    with pytest.raises(TrainingError) as err:
        train(simfile, toy.problem, toy.noise, b, opts, quiet=True)
    assert len(calls) == (3 if where == "fsync" else 2)
    message = str(err.value)
    assert f"cannot write checkpoint {b}: No space left on device" in message
    assert "\n" not in message
    assert cli._fail(err.value, False) == 2
    assert capsys.readouterr().err.count("\n") == 1
    monkeypatch.undo()
    left = os.listdir(tmp_path / "out")
    assert not [n for n in left if ".tmp" in n], left
    assert load_checkpoint(b)["epoch"] == 1
    train(simfile, toy.problem, toy.noise, b, dict(opts, train_seed=1), resume=True, quiet=True)
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert cb["epoch"] == 3
    for key in ca["model_state"]:
        torch.testing.assert_close(ca["model_state"][key], cb["model_state"][key], rtol=0, atol=0)


def test_existing_checkpoint_needs_overwrite_or_resume(toy, simfile, tmp_path):
    ck = str(tmp_path / "f.pt")
    train(simfile, toy.problem, toy.noise, ck, dict(TINY, epochs=1), quiet=True)
    with pytest.raises(UsageError, match="--overwrite"):
        train(simfile, toy.problem, toy.noise, ck, dict(TINY, epochs=1), quiet=True)
    train(simfile, toy.problem, toy.noise, ck, dict(TINY, epochs=1), overwrite=True, quiet=True)


def test_refuses_a_simulation_file_that_does_not_match(toy, simfile, tmp_path):
    ck = str(tmp_path / "f.pt")
    other = dict(toy.problem, filter_names=["band0", "band1", "sdss_r"])
    with pytest.raises(TrainingError, match=r"filters: .*sdss_r"):
        train(simfile, other, toy.noise, ck, TINY, quiet=True)
    prior = json.loads(json.dumps(toy.problem["prior"]))
    prior["t1"]["bounds"] = [0.0, 2.0]
    prior["t1"]["params"]["maxi"] = 2.0
    with pytest.raises(TrainingError, match=r"prior bounds of t1"):
        train(simfile, dict(toy.problem, prior=prior), toy.noise, ck, TINY, quiet=True)
    with pytest.raises(TrainingError, match="cannot open"):
        train(str(tmp_path / "nope.h5"), toy.problem, toy.noise, ck, TINY, quiet=True)
    with pytest.raises(UsageError, match="not a free parameter"):
        train(simfile, toy.problem, toy.noise, ck, dict(TINY, condition=["zred"]), quiet=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_on_cuda_and_loads_on_cpu(toy, simfile, tmp_path):
    ck = train(simfile, toy.problem, toy.noise, str(tmp_path / "f.pt"),
               dict(TINY, epochs=1, device="cuda"), quiet=True)
    post = AmortizedPosterior.from_checkpoint(ck, device="cpu")
    theta, _ = post.sample(np.full((2, 3), 1e-9), np.full((2, 3), 5e-11),
                           np.zeros((2, 3), bool), None, 5)
    assert theta.shape == (2, 5, 2)


@pytest.fixture
def stored_simfile(toy, tmp_path):
    """The toy's simulations written through SimulationStore, so with chunk checksums
    (chunk 3 of 4 left undone)."""
    from prospect_sim.store import SimulationStore
    rng = np.random.default_rng(5)
    path = str(tmp_path / "stored_sims.h5")
    with SimulationStore.create(path, theta_labels=toy.theta_labels,
                                filter_names=toy.filter_names, extras=["mfrac"],
                                n_samples=1000, chunk_size=250, seed=0,
                                attrs={"prior": json.dumps(toy.problem["prior"])}) as store:
        for k in range(3):
            theta = rng.random((250, toy.n_params))
            store.write_chunk(k, theta, toy.phot(theta), {"mfrac": np.ones(250)},
                              np.ones(250, bool))
    return path


def test_a_chunk_with_corrupted_bytes_is_refused_naming_it(toy, stored_simfile, tmp_path):
    """The checksums are checked while the usable rows are found; a corrupted chunk
    stops training before any epoch (it would train into NaN), the intact file trains."""
    with SimulationData(stored_simfile, block_rows=100) as data:
        assert data.n_good == 750 and data.n_nonfinite == 0
    ck = str(tmp_path / "f.pt")
    train(stored_simfile, toy.problem, toy.noise, ck, dict(TINY, epochs=1), quiet=True)
    assert np.isfinite(load_checkpoint(ck)["history"][0]["train_loss"])
    with h5py.File(stored_simfile, "r+") as h5:   # finite garbage, behind the store's back
        h5["phot"][300, 1] = 1e300
    with pytest.raises(TrainingError, match=r"chunk\(s\) 1 of 4 fail their checksum") as err:
        train(stored_simfile, toy.problem, toy.noise, str(tmp_path / "g.pt"), TINY, quiet=True)
    assert stored_simfile in str(err.value) and "--resume" in str(err.value)
    assert not (tmp_path / "g.pt").exists()
    with h5py.File(stored_simfile, "r+") as h5:   # an extra column counts too
        h5["extras/mfrac"][10] = 0.5
    with pytest.raises(TrainingError, match=r"chunk\(s\) 0-1 of 4"):
        SimulationData(stored_simfile)


def test_a_long_epoch_shows_its_rows(toy, simfile, tmp_path, monkeypatch, capsys):
    """Past EPOCH_BAR_DELAY seconds an epoch shows a bar of its rows; --quiet shows none."""
    from prospect_sim.amortized import train as train_mod
    monkeypatch.setattr(train_mod, "EPOCH_BAR_DELAY", 0.0)
    train(simfile, toy.problem, toy.noise, str(tmp_path / "a.pt"), dict(TINY, epochs=1),
          quiet=False)
    err = capsys.readouterr().err.replace("\r", "\n")
    assert any(line.startswith("epoch 1:") and "row" in line for line in err.splitlines()), err
    train(simfile, toy.problem, toy.noise, str(tmp_path / "b.pt"), dict(TINY, epochs=1),
          quiet=True)
    assert "epoch 1:" not in capsys.readouterr().err
