"""Flags of the amortised modes; importing them (and the noise models) is cheap."""

import argparse
import subprocess
import sys

import pytest

from prospect_sim.amortized import options


def test_options_and_noise_import_no_torch():
    code = ("import sys, prospect_sim.amortized.options, prospect_sim.amortized.noise; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_flags_parse_with_defaults():
    p = argparse.ArgumentParser()
    options.add_arguments(p)
    a = vars(p.parse_args(["--condition", "zred", "--condition", "logzsol", "--importance",
                           "--flow", "maf", "--n_draws", "10"]))
    assert a["condition"] == ["zred", "logzsol"] and a["importance"] and a["flow"] == "maf"
    assert a["n_draws"] == 10 and a["epochs"] == options.DEFAULTS["epochs"]
    assert options.get(a, "catalog") is None and options.get({}, "lr") == options.DEFAULTS["lr"]
    with pytest.raises(SystemExit):
        p.parse_args(["--flow", "glow"])


def test_existing_flag_of_a_param_file_is_kept():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=str, default="mine")
    options.add_arguments(p)
    assert p.parse_args([]).epochs == "mine"


def test_catalogue_table_flags_reach_infer_through_the_driver():
    """--keep_columns, --summary, --columns are ours; --id_column is the catalogue fits'
    flag, read by --infer too (defined once, so the driver's parser builds)."""
    from prospect_sim import get_parser
    p = get_parser()
    flags = [o for a in p._actions for o in a.option_strings]
    for flag in ("--keep_columns", "--summary", "--columns", "--id_column", "--summary_only"):
        assert flags.count(flag) == 1, flag
    a = vars(p.parse_args(["--infer", "--keep_columns", "ra,dec", "--summary", "t.fits",
                           "--columns", "m.json", "--id_column", "NUMBER"]))
    assert [options.get(a, k) for k in ("keep_columns", "summary", "columns", "id_column")] == \
        ["ra,dec", "t.fits", "m.json", "NUMBER"]
    assert options.get({}, "summary") is None and options.get({}, "id_column") is None
