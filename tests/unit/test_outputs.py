"""Output paths, refusal to clobber, and atomic writes (prospect_sim.outputs)."""
import os
from pathlib import Path

import pytest

from prospect_sim import outputs
from prospect_sim.errors import UsageError


def test_path_for_every_kind_from_outfile():
    rp = {"outfile": "out/gal", "simfile": None, "checkpoint": None}
    assert outputs.path_for(rp, "sims") == "out/gal_sims.h5"
    assert outputs.path_for(rp, "dynesty") == "out/gal_dynesty.h5"
    assert outputs.path_for(rp, "emcee") == "out/gal_emcee.h5"
    assert outputs.path_for(rp, "optimize") == "out/gal_optimize.h5"
    assert outputs.path_for(rp, "flow") == "out/gal_flow.pt"
    assert outputs.path_for(rp, "posterior") == "out/gal_posterior.h5"


def test_default_base_is_param_file_stem_in_cwd():
    rp = {"outfile": None, "param_file": "/somewhere/param_files/demo_params.py"}
    assert outputs.path_for(rp, "dynesty") == "demo_params_dynesty.h5"


def test_simfile_and_checkpoint_override():
    rp = {"outfile": "b", "simfile": "big.h5", "checkpoint": "net.pt"}
    assert outputs.path_for(rp, "sims") == "big.h5"
    assert outputs.path_for(rp, "flow") == "net.pt"
    assert outputs.path_for(rp, "posterior") == "b_posterior.h5"


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown output kind"):
        outputs.path_for({}, "chains")


def test_check_writable(tmp_path):
    path = tmp_path / "x.h5"
    outputs.check_writable(str(path), {})                 # absent: fine
    path.write_text("old")
    with pytest.raises(UsageError, match="already exists.*--overwrite"):
        outputs.check_writable(str(path), {})
    outputs.check_writable(str(path), {"overwrite": True})
    outputs.check_writable(str(path), {"resume": True})
    with pytest.raises(UsageError, match="--overwrite to replace it,"):
        outputs.check_writable(str(path), {"resume": True}, resumable=False)
    with pytest.raises(UsageError, match="does not exist"):
        outputs.check_writable(str(tmp_path / "nope" / "x.h5"), {})


def test_require_existing(tmp_path):
    with pytest.raises(UsageError, match="--simfile"):
        outputs.require_existing(str(tmp_path / "s.h5"), "--simfile", "simulation file")


def test_atomic_path_renames_on_success_and_keeps_old_on_failure(tmp_path):
    final = tmp_path / "r.txt"
    with outputs.atomic_path(final) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and not final.exists()
        Path(tmp).write_text("new")
    assert final.read_text() == "new"
    with pytest.raises(RuntimeError):
        with outputs.atomic_path(final) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("interrupted")
    assert final.read_text() == "new"
    assert os.listdir(tmp_path) == ["r.txt"]


def test_an_unwritable_folder_is_refused_before_any_work():
    """The write probe: /proc cannot hold files, for root too."""
    from prospect_sim import outputs
    with pytest.raises(UsageError, match=r"cannot write /proc/x_optimize.h5: .* in /proc/"):
        outputs.check_writable("/proc/x_optimize.h5", {})
    assert not list(Path("/proc").glob(".prospect_sim_probe_*"))
