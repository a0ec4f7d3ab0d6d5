"""``--train`` and ``--infer`` refuse inputs that do not match: corrupted bytes in the
simulation file, a fixed parameter changed since the file or the checkpoint was made.

On the toy parameter file (``simulate_toy_params.py``: the demo's model with an
analytic sps), run in this process through the command line, so the refusals are
the one line on stderr and the exit status 2 a user sees. One 600-row simulation
and one tiny training (a few seconds) serve every test.
"""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from prospect_sim import cli, info

TOY = Path(__file__).with_name("simulate_toy_params.py")
TRAIN = ["--epochs", "1", "--batch_size", "64", "--hidden", "8", "--transforms", "1",
         "--bins", "4", "--embedding", "8", "--embed_dim", "4", "--n_test", "20",
         "--val_fraction", "0.2", "--block_rows", "100", "--shuffle_blocks", "2",
         "--no_validate_after_train"]
WARNING = "could not be checked against the param file"


def _main(paramfile, *args):
    """``python paramfile *args`` in this process: the exit status (0 when it returned)."""
    try:
        cli.main(argv=["--quiet"] + [str(a) for a in args], paramfile=str(paramfile))
    except SystemExit as exit_:
        return exit_.code
    return 0


def _edited(tmp_path, line, name="edited_params.py"):
    """The toy parameter file with ``line`` run on ``params`` before the model is built."""
    text = TOY.read_text()
    anchor = "    return SpecModel(params)\n"
    assert text.count(anchor) == 1
    path = tmp_path / name
    path.write_text(text.replace(anchor, f"    {line}\n" + anchor))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A simulation file and a checkpoint trained on it, both with dust_type 0."""
    d = tmp_path_factory.mktemp("made")
    sims = d / "sims.h5"
    assert _main(TOY, "--simulate", "--n_samples", 600, "--chunk_size", 200,
                 "--simfile", sims) == 0
    assert _main(TOY, "--train", "--simfile", sims, "--outfile", d / "run", *TRAIN) == 0
    ckpt = d / "run_flow.pt"
    assert ckpt.is_file()
    return sims, ckpt


def test_the_simulation_file_records_the_fixed_configuration(made):
    sims, _ = made
    with h5py.File(sims, "r") as f:
        config = json.loads(f.attrs["fixed_config"])
    assert config == {"model": "SpecModel", "fixed": {"sfh": 4, "imf_type": 2, "dust_type": 0},
                      "sps": {"class": "ToySPS"}}
    assert "  fixed:     dust_type=0, imf_type=2, sfh=4 (SpecModel)\n" in info.describe(sims)


def test_resuming_a_file_made_before_fixed_config_records_it(made, tmp_path):
    sims, _ = made
    old = _copy(sims, tmp_path, "old_sims.h5")
    with h5py.File(old, "r+") as f:
        expected = f.attrs["fixed_config"]
        del f.attrs["fixed_config"]
    assert "fixed:     not recorded" in info.describe(old)
    assert _main(TOY, "--simulate", "--n_samples", 600, "--chunk_size", 200, "--simfile", old,
                 "--resume") == 0
    with h5py.File(old, "r") as f:
        assert f.attrs["fixed_config"] == expected


def _copy(src, tmp_path, name):
    dst = tmp_path / name
    shutil.copy(src, dst)
    return dst


def _corrupt(path, key, chunk):
    """Overwrite 16 bytes of ``key``'s rows of simulation chunk ``chunk`` on disk, behind
    HDF5's back, with finite garbage (1.8e308), as a bad disk or copy would."""
    with h5py.File(path, "r") as f:
        dset = f[key]
        rows_per_storage = dset.chunks[0]
        size = int(f.attrs["chunk_size"])
        assert size % rows_per_storage == 0
        info = dset.id.get_chunk_info_by_coord((chunk * size,) + (0,) * (dset.ndim - 1))
        offset = info.byte_offset + 8 * dset.shape[1] * 3     # row 3 of the chunk
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.full(2, np.finfo(float).max).tobytes())


def _one_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_train_refuses_a_corrupt_chunk_naming_it(made, tmp_path, capsys):
    sims, _ = made                        # the intact file trained (the fixture)
    bad = _copy(sims, tmp_path, "bad_sims.h5")
    _corrupt(bad, "phot", 1)
    capsys.readouterr()
    status = _main(TOY, "--train", "--simfile", bad, "--outfile", tmp_path / "x", *TRAIN)
    line = _one_line(capsys)
    assert status == 2, line
    assert "chunk(s) 1 of 3 fail their checksum" in line and str(bad) in line, line
    assert not (tmp_path / "x_flow.pt").exists()
    # a second bad chunk is named too
    _corrupt(bad, "theta", 2)
    assert _main(TOY, "--train", "--simfile", bad, "--outfile", tmp_path / "x", *TRAIN) == 2
    assert "chunk(s) 1-2 of 3" in _one_line(capsys)


def test_a_changed_fixed_parameter_is_refused_by_train_and_infer(made, tmp_path, capsys):
    sims, ckpt = made
    edited = _edited(tmp_path, 'params["dust_type"]["init"] = 2')
    capsys.readouterr()
    status = _main(edited, "--train", "--simfile", sims, "--outfile", tmp_path / "x", *TRAIN)
    line = _one_line(capsys)
    assert status == 2, line
    assert (f"fixed parameter dust_type: 2 in the param file, 0 in the simulation file "
            f"'{sims}'") in line, line
    assert not (tmp_path / "x_flow.pt").exists()
    status = _main(edited, "--infer", "--checkpoint", ckpt, "--outfile", tmp_path / "x",
                   "--n_draws", 10)
    line = _one_line(capsys)
    assert status == 2, line
    assert f"fixed parameter dust_type: 2 in the param file, 0 in the checkpoint '{ckpt}'" \
        in line, line
    assert not list(tmp_path.glob("x_posterior*"))
    # the unedited file infers with the same checkpoint
    assert _main(TOY, "--infer", "--checkpoint", ckpt, "--outfile", tmp_path / "y",
                 "--n_draws", 10) == 0
    assert (tmp_path / "y_posterior.h5").is_file()


def test_another_sps_is_refused_by_train_and_infer(made, tmp_path, capsys):
    """The sps's own configuration is recorded too (here its class: the same photometry
    from another sps class is refused, as another library would be)."""
    sims, ckpt = made
    text = TOY.read_text()
    anchor = "    return ToySPS(delay=toy_delay, nan_above=toy_nan_above)\n"
    assert text.count(anchor) == 1
    other = tmp_path / "other_sps_params.py"
    other.write_text(text.replace(anchor, anchor.replace("ToySPS(", "OtherSPS(")).replace(
        "\ndef build_model", "\nclass OtherSPS(ToySPS):\n    pass\n\n\ndef build_model"))
    capsys.readouterr()
    assert _main(other, "--train", "--simfile", sims, "--outfile", tmp_path / "x", *TRAIN) == 2
    assert "sps class: 'OtherSPS' in the param file, 'ToySPS' in the simulation file" \
        in _one_line(capsys)
    assert _main(other, "--infer", "--checkpoint", ckpt, "--outfile", tmp_path / "x",
                 "--n_draws", 10) == 2
    assert "sps class: 'OtherSPS' in the param file, 'ToySPS' in the checkpoint" \
        in _one_line(capsys)


def test_a_file_made_before_fixed_config_is_checked_from_its_model_config(made, tmp_path,
                                                                          capsys):
    """Simulation files made before ``fixed_config`` was written have ``model_config``
    (every fixed parameter's value): the change is caught from it."""
    sims, _ = made
    old = _copy(sims, tmp_path, "old_sims.h5")
    with h5py.File(old, "r+") as f:
        del f.attrs["fixed_config"]
    edited = _edited(tmp_path, 'params["dust_type"]["init"] = 2')
    capsys.readouterr()
    assert _main(edited, "--train", "--simfile", old, "--outfile", tmp_path / "x", *TRAIN) == 2
    assert "fixed parameter dust_type: 2 in the param file, 0 in the simulation file" \
        in _one_line(capsys)
    assert _main(TOY, "--train", "--simfile", old, "--outfile", tmp_path / "y", *TRAIN) == 0


def _warnings(caplog):
    return [r for r in caplog.records if WARNING in r.getMessage()]


def test_files_without_the_record_load_with_one_warning(made, tmp_path, caplog):
    """A simulation file with neither record, and a checkpoint without ``config``:
    used, with a warning (once) that the fixed configuration was not checked."""
    sims, ckpt = made
    old = _copy(sims, tmp_path, "old_sims.h5")
    with h5py.File(old, "r+") as f:
        del f.attrs["fixed_config"]
        del f.attrs["model_config"]
    edited = _edited(tmp_path, 'params["dust_type"]["init"] = 2')
    assert _main(edited, "--train", "--simfile", old, "--outfile", tmp_path / "x", *TRAIN) == 0
    found = _warnings(caplog)
    assert len(found) == 1 and str(old) in found[0].getMessage(), caplog.text
    caplog.clear()
    c = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert c["problem"]["config"]["fixed"]["dust_type"] == 0
    del c["problem"]["config"]
    old_ckpt = tmp_path / "old_flow.pt"
    torch.save(c, old_ckpt)
    assert _main(edited, "--infer", "--checkpoint", old_ckpt, "--outfile", tmp_path / "y",
                 "--n_draws", 10) == 0
    found = _warnings(caplog)
    assert len(found) == 1 and f"checkpoint '{old_ckpt}'" in found[0].getMessage(), caplog.text
    assert (tmp_path / "y_posterior.h5").is_file()


def test_validate_checks_the_fixed_configuration_too(made, tmp_path, caplog, capsys):
    """--validate compares the whole record: silent on a match, refuses a change."""
    sims, ckpt = made
    ckpt_copy = _copy(ckpt, tmp_path, "run_flow.pt")
    assert _main(TOY, "--validate", "--checkpoint", ckpt_copy, "--simfile", sims,
                 "--n_validate", 10, "--validate_draws", 20) == 0
    assert not _warnings(caplog), caplog.text
    edited = _edited(tmp_path, 'params["dust_type"]["init"] = 2')
    other = tmp_path / "dust2_sims.h5"
    assert _main(edited, "--simulate", "--n_samples", 300, "--chunk_size", 100,
                 "--simfile", other) == 0
    capsys.readouterr()
    # the param file matches the checkpoint; the simulation file does not
    assert _main(TOY, "--validate", "--checkpoint", ckpt_copy, "--simfile", other,
                 "--n_validate", 10, "--validate_draws", 20, "--overwrite") == 2
    line = _one_line(capsys)
    assert "fixed parameter dust_type" in line and str(other) in line, line
