"""The command line: flags, --help, mode dispatch and every bad input (prospect_sim.cli).

Bad input is run as a real subprocess and must give exactly one line on
stderr, exit status 2, and leave the folder as it was.
"""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from prospect_sim import cli
from prospect_sim.errors import UsageError

TOY = Path(__file__).resolve().parents[1] / "mpi" / "toy_params.py"
TOY_BODY = TOY.read_text().split("if __name__")[0]
MAIN = '\nif __name__ == "__main__":\n    from prospect_sim import main\n    main()\n'


def _run(args, cwd, timeout=120):
    env = dict(os.environ)
    env.pop("PMI_RANK", None)
    env.pop("PMI_SIZE", None)
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _paramfile(tmp_path, body="", name="p.py", base=TOY_BODY):
    path = tmp_path / name
    path.write_text(base + textwrap.dedent(body) + MAIN)
    return path


def _assert_one_line_error(proc, *fragments):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert proc.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- the parser -------------------------------------------------------------

def test_parser_has_prospector_and_prospect_sim_flags():
    parser = cli.get_parser()
    args = parser.parse_args(["--dynesty", "--nlive_init", "50", "--sps", "fsps",
                              "--workers", "2", "--seed", "3", "--outfile", "x"])
    assert args.dynesty and args.nested_nlive_init == 50 and args.sps_library == "fsps"
    assert (args.workers, args.seed, args.outfile) == (2, 3, "x")
    defaults = vars(parser.parse_args([]))
    assert defaults["outfile"] is None and defaults["sps_library"] == "grid"
    for flag in ("simulate", "train", "infer", "validate", "resume", "overwrite", "quiet",
                 "traceback", "debug", "restart_from", "simfile", "checkpoint", "n_samples"):
        assert flag in defaults


@pytest.mark.parametrize("flags, mode", [
    ({"dynesty": True}, "fit"), ({"optimize": True, "emcee": True}, "fit"),
    ({"simulate": True}, "simulate"), ({"train": True}, "train"), ({"infer": True}, "infer"),
])
def test_selected_mode(flags, mode):
    assert cli.selected_mode(flags) == mode


@pytest.mark.parametrize("flags, message", [
    ({}, "no mode given"), ({"simulate": True, "dynesty": True}, "were given together"),
    ({"train": True, "infer": True}, "were given together"),
    ({"emcee": True, "dynesty": True}, "choose one sampler"),
])
def test_selected_mode_errors(flags, message):
    with pytest.raises(UsageError, match=message):
        cli.selected_mode(flags)


def test_help_shows_each_default_once_and_none_for_on_off_flags():
    import re
    text = " ".join(cli.get_parser().format_help().split())
    body = text[text.index("--outfile OUTFILE base name"):]
    outfile = body[:body.index("--output_pickle")]
    assert outfile.count("default") == 1, outfile            # the text's own, not argparse's None
    flag = text[text.index("--no_validate_after_train skip"):]
    assert not re.match(r"--no_validate_after_train [^-]*\(default: True\)", flag), flag[:200]
    assert "--n_samples N_SAMPLES number of prior draws for --simulate (default: 100000)" in text


def test_help_is_fast_and_imports_nothing_heavy(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(f"""
        import sys, time
        sys.argv = ["p.py", "--help"]
        t = time.time()
        try:
            import runpy; runpy.run_path({str(TOY)!r}, run_name="__main__")
        except SystemExit as e:
            assert e.code == 0, e.code
        # (dynesty, emcee and h5py come with `import prospect` itself; the
        # prospect_sim.sps modules are imported by the package, but no grid is read)
        heavy = [m for m in ("torch", "mpi4py", "zuko", "fsps", "prospect_sim.fit",
                             "prospect_sim.amortized.train") if m in sys.modules]
        print("HEAVY", heavy)
        print("SECONDS", time.time() - t)
        """))
    proc = _run([probe], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for text in ("--simulate", "--dynesty", "--nested_bound", "--toy_delay", "--traceback"):
        assert text in proc.stdout
    assert "HEAVY []" in proc.stdout, proc.stdout[-300:]
    seconds = float(proc.stdout.split("SECONDS")[-1])
    assert seconds < 10, seconds          # generous: 2 shared cores; ~2 s is prospect's import


# --- bad input: one line, status 2, nothing written -----------------------------

def test_missing_builder(tmp_path):
    path = tmp_path / "nomodel.py"
    path.write_text("def build_obs(**k): pass\ndef build_sps(**k): pass\n" + MAIN)
    proc = _run([path, "--dynesty"], tmp_path)
    _assert_one_line_error(proc, "nomodel.py", "build_model")
    assert sorted(os.listdir(tmp_path)) == ["nomodel.py"]


def test_builder_raises(tmp_path):
    path = _paramfile(tmp_path, """
        def build_model(**run_params):
            raise ValueError("bad prior for tau")
        """)
    proc = _run([path, "--dynesty"], tmp_path)
    _assert_one_line_error(proc, "p.py", "build_model", "ValueError: bad prior for tau",
                           "expected")
    assert sorted(os.listdir(tmp_path)) == ["p.py"]


def test_builder_raises_with_traceback_flag(tmp_path):
    path = _paramfile(tmp_path, """
        def build_model(**run_params):
            raise ValueError("bad prior for tau")
        """)
    proc = _run([path, "--dynesty", "--traceback"], tmp_path)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and 'raise ValueError("bad prior for tau")' in proc.stderr


def test_builder_returns_wrong_kind(tmp_path):
    path = _paramfile(tmp_path, """
        def build_sps(**run_params):
            return {"library": "bc03"}
        """)
    proc = _run([path, "--emcee"], tmp_path)
    _assert_one_line_error(proc, "p.py", "build_sps", "returned dict", "expected an sps")


@pytest.mark.parametrize("args, fragment", [
    (["--dynesty", "--simulate"], "--simulate and --dynesty were given together"),
    ([], "no mode given"),
    (["--dynesty", "--no_such_flag"], "unrecognized arguments: --no_such_flag"),
    (["--simulate", "--n_samples", "0"], "--n_samples must be a positive"),
    (["--simulate", "--n_samples=-5"], "got -5"),
    (["--train", "--simfile", "missing_sims.h5"], "missing_sims.h5 does not exist"),
    (["--train"], "p_sims.h5 does not exist"),
    (["--dynesty", "--workers", "0"], "--workers must be at least 1"),
    (["--dynesty", "--queue_size", "0"], "--queue_size must be at least 1"),
    (["--emcee", "--resume"], "--restart_from"),
])
def test_usage_errors(tmp_path, args, fragment):
    path = _paramfile(tmp_path)
    proc = _run([path, *args], tmp_path)
    _assert_one_line_error(proc, fragment)
    assert sorted(os.listdir(tmp_path)) == ["p.py"]


def test_existing_output_is_not_replaced(tmp_path):
    path = _paramfile(tmp_path)
    out = tmp_path / "p_dynesty.h5"
    out.write_text("previous results")
    before = out.stat().st_mtime_ns
    proc = _run([path, "--dynesty"], tmp_path)
    _assert_one_line_error(proc, "p_dynesty.h5 already exists", "--overwrite")
    assert out.read_text() == "previous results" and out.stat().st_mtime_ns == before
    assert sorted(os.listdir(tmp_path)) == ["p.py", "p_dynesty.h5"]


# --- good input -------------------------------------------------------------

def test_optimize_prints_the_path_last_and_is_quiet(tmp_path):
    path = _paramfile(tmp_path)
    proc = _run([path, "--optimize", "--quiet", "--outfile", "res"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "res_optimize.h5"
    assert "prospect_sim:" not in proc.stderr
    assert (tmp_path / "res_optimize.h5").is_file()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_debug_stops_after_building(tmp_path):
    path = _paramfile(tmp_path)
    proc = _run([path, "--dynesty", "--debug"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["p.py"]


def test_file_building_its_own_parser(tmp_path):
    path = tmp_path / "own.py"
    path.write_text(TOY_BODY + textwrap.dedent("""
        if __name__ == "__main__":
            from prospect_sim import get_parser, main
            parser = get_parser()
            parser.add_argument("--toy_delay", type=float, default=0.0)
            parser.add_argument("--my_flag", type=int, default=1)
            main(parser=parser)
        """))
    proc = _run([path, "--optimize", "--my_flag", "3", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "own_optimize.h5"


def test_prospector_style_file_keeps_working(tmp_path):
    """A long __main__ block in Prospector's own style, calling fit_model and write_hdf5."""
    path = tmp_path / "old_style.py"
    path.write_text(TOY_BODY + textwrap.dedent("""
        if __name__ == "__main__":
            import prospect_sim  # noqa: F401  (imported, but not driving the run)
            from prospect.utils.prospect_args import get_parser
            from prospect.fitting import fit_model, lnprobfn
            from prospect.io import write_results as writer
            parser = get_parser()
            args = parser.parse_args()
            run_params = vars(args)
            run_params["param_file"] = __file__
            obs, model, sps = build_obs(**run_params), build_model(**run_params), build_sps()
            noise = (None, None)
            output = fit_model(obs, model, sps, noise, lnprobfn=lnprobfn, **run_params)
            hfile = "{0}_result.h5".format(args.outfile)
            writer.write_hdf5(hfile, run_params, model, obs, output["sampling"][0],
                              output["optimization"][0], tsample=output["sampling"][1],
                              toptimize=output["optimization"][1], sps=sps)
            print(hfile)
        """))
    proc = _run([path, "--emcee", "--nwalkers", "8", "--niter", "16", "--nburn", "8",
                 "--outfile", "old"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    from prospect.io.read_results import results_from
    res, obs, _ = results_from(str(tmp_path / "old_result.h5"), dangerous=False)
    assert res["chain"].shape == (8, 16, 2)


def test_prospector_style_file_with_our_parser_passes_run_params_to_fit_model(tmp_path):
    """fit_model(obs, model, sps, noise, **run_params) with prospect_sim's parser.

    ``--sps`` is stored as ``run_params["sps_library"]``: a ``run_params["sps"]``
    made this call fail with "multiple values for argument 'sps'".
    """
    path = tmp_path / "old_style_ours.py"
    path.write_text(TOY_BODY + textwrap.dedent("""
        if __name__ == "__main__":
            import prospect_sim
            from prospect.fitting import fit_model
            from prospect.io import write_results as writer
            parser = prospect_sim.get_parser()
            add_arguments(parser)
            run_params = vars(parser.parse_args())
            run_params["param_file"] = __file__
            assert run_params["sps_library"] == "fsps" and "sps" not in run_params
            obs, model = build_obs(**run_params), build_model(**run_params)
            sps, noise = build_sps(**run_params), (None, None)
            output = fit_model(obs, model, sps, noise, **run_params)
            hfile = "{0}_result.h5".format(run_params["outfile"])
            writer.write_hdf5(hfile, run_params, model, obs, output["sampling"][0],
                              None, tsample=output["sampling"][1],
                              toptimize=output["optimization"][1], sps=sps)
            print(hfile)
        """))
    proc = _run([path, "--optimize", "--sps", "fsps", "--outfile", "ours"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "multiple values" not in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "ours_result.h5"
    from prospect.io.read_results import results_from
    res, _, _ = results_from(str(tmp_path / "ours_result.h5"), dangerous=False)
    assert res["run_params"]["sps_library"] == "fsps"


def test_tool_info_and_run(tmp_path):
    proc = _run(["-m", "prospect_sim", "info", TOY], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "free parameters (2)" in proc.stdout and "sdss_g0" in proc.stdout
    proc = _run(["-m", "prospect_sim", "info", tmp_path / "none.py"], tmp_path)
    _assert_one_line_error(proc, "none.py does not exist")
    proc = _run(["-m", "prospect_sim", "frobnicate", TOY], tmp_path)
    _assert_one_line_error(proc, "expected 'info FILE' or 'run FILE'")
    proc = _run(["-m", "prospect_sim", "run", TOY, "--optimize", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "toy_params_optimize.h5"


def test_dynesty_queue_size_rule():
    from prospect_sim.fit import queue_size
    assert queue_size({}, 1) == 1                               # serial: one at a time
    assert queue_size({}, 2) == 8                               # 4 M while K // 8 allows
    assert queue_size({"nested_nlive_init": 40}, 2) == 5        # K // 8 for small K
    assert queue_size({"nested_nlive_init": 8}, 2) == 2         # never below M
    assert queue_size({}, 63) == 63                             # many workers: M
    assert queue_size({"queue_size": 3}, 2) == 3                # --queue_size wins
