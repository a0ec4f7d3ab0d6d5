"""The command line: one parser for every mode, and ``main()`` for parameter files.

A parameter file ends with::

    if __name__ == "__main__":
        from prospect_sim import main
        main()

and runs as ``python my_params.py --simulate | --dynesty | --emcee |
--optimize | --train | --infer | --validate [flags]`` (``mpiexec -n N python
my_params.py ...`` for MPI). ``prospect-sim info FILE`` (or ``python -m
prospect_sim info FILE``) summarises a parameter file; ``prospect-sim run FILE
--dynesty ...`` runs one that has no ``__main__`` block.

This is the only module that reads ``sys.argv``. Errors a user can cause
(:class:`~prospect_sim.errors.ProspectSimError`, bad flags) end the program
with one line on stderr and exit status 2; ``--traceback`` shows the full
traceback instead (Prospector's ``--debug`` keeps its own meaning: stop after
building, before fitting).
"""

import argparse
import importlib
import logging
import sys
from pathlib import Path

from .errors import ParamFileError, ProspectSimError, UsageError
from .samplers import SAMPLERS, fit_kind

__all__ = ["get_parser", "main", "tool_main", "MODES"]

log = logging.getLogger("prospect_sim")

#: Mode flag -> "module:function" that runs it (imported only when chosen).
MODES = {
    "simulate": "prospect_sim.simulate:run",
    "train": "prospect_sim.amortized.train:run",
    "infer": "prospect_sim.amortized.infer:run",
    "validate": "prospect_sim.amortized.validate:run",
    "fit": "prospect_sim.fit:run",
    "catalog_fit": "prospect_sim.catalog_fit:run",     # a fitter with --catalog
}
FIT_FLAGS = tuple(SAMPLERS)

#: Modules that add mode-specific flags; they import nothing heavy.
_OPTION_MODULES = ("prospect_sim.simulate", "prospect_sim.amortized.options",
                   "prospect_sim.nautilus_fit", "prospect_sim.catalog_fit")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (Prospector's full usage is 40 lines)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in ``--help``, except where they mislead or repeat the text.

    An on/off flag's default is its state when absent, which its text says
    (``--no_validate_after_train ... (default: True)`` read as "skipped by
    default"); a help text that names its own default keeps only that one.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.nargs == 0 or "default" in text or action.default is None
                or action.default is argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def get_parser(parents=None):
    """Prospector's argument parser plus prospect_sim's flags.

    Every flag of ``prospect.utils.prospect_args.get_parser`` keeps its
    meaning; the modes ``--simulate``, ``--train``, ``--infer``,
    ``--validate`` sit beside Prospector's ``--optimize``, ``--emcee`` and
    ``--dynesty``, and mode-specific flags come from
    :mod:`prospect_sim.simulate` and :mod:`prospect_sim.amortized.options`.

    Returns
    -------
    argparse.ArgumentParser
    """
    from prospect.utils.prospect_args import get_parser as prospector_parser
    base = prospector_parser()
    parser = _Parser(parents=[base] + list(parents or []), add_help=False,
                     formatter_class=_HelpFormatter,
                     description="Run a prospect_sim parameter file in one mode: "
                                 "--simulate, --dynesty/--emcee/--optimize, --train, "
                                 "--infer or --validate.")
    for action in parser._actions:
        if action.dest == "outfile":
            action.default = None
            action.help = ("base name (with path) of every output: BASE_sims.h5, "
                           "BASE_dynesty.h5, BASE_emcee.h5, BASE_optimize.h5, BASE_flow.pt, "
                           "BASE_posterior.h5 (default: the parameter file's name)")

    modes = parser.add_argument_group("prospect_sim modes (Prospector's --optimize, "
                                      "--emcee, --dynesty above)")
    modes.add_argument("--simulate", action="store_true",
                       help="draw parameters from the prior and store model photometry "
                            "(training set) in BASE_sims.h5")
    modes.add_argument("--train", action="store_true",
                       help="train the amortised posterior on the simulations -> BASE_flow.pt")
    modes.add_argument("--infer", action="store_true",
                       help="amortised posterior for the obs (or a catalogue) -> BASE_posterior.h5")
    modes.add_argument("--validate", action="store_true",
                       help="calibration checks of the amortised posterior")

    common = parser.add_argument_group("prospect_sim options")
    common.add_argument("--n_samples", type=int, default=100_000,
                        help="number of prior draws for --simulate")
    common.add_argument("--seed", type=int, default=0,
                        help="random seed (simulation chunks, samplers, training)")
    common.add_argument("--workers", type=int, default=1,
                        help="local worker processes when not under mpiexec")
    # dest is not "sps": a Prospector-style file calls fit_model(obs, model, sps, noise,
    # **run_params), and a run_params["sps"] would collide with that argument.
    common.add_argument("--sps", dest="sps_library", choices=["grid", "fsps"], default="grid",
                        help="stellar populations handed to build_sps as "
                             "run_params['sps_library']: the embedded BC03 grid, or FSPS "
                             "(needs $SPS_HOME)")
    common.add_argument("--resume", action="store_true",
                        help="continue an interrupted run (--simulate, --dynesty, --nautilus, "
                             "--train)")
    common.add_argument("--overwrite", action="store_true",
                        help="replace an existing output")
    common.add_argument("--quiet", action="store_true",
                        help="no progress or log messages (only errors and the output path)")
    common.add_argument("--traceback", action="store_true",
                        help="show full tracebacks of errors")
    common.add_argument("--simfile", type=str, default=None,
                        help="simulation file to write (--simulate) or read "
                             "(--train/--validate) instead of BASE_sims.h5")
    common.add_argument("--checkpoint", type=str, default=None,
                        help="network checkpoint to write (--train) or read "
                             "(--infer/--validate) instead of BASE_flow.pt")
    common.add_argument("--checkpoint_every", type=float, default=60.0,
                        help="seconds between dynesty checkpoints (for --resume)")
    common.add_argument("--queue_size", type=int, default=None,
                        help="dynesty proposals per round, spread over the workers "
                             "(None: 1 serially, max(M, min(4 M, nlive_init // 8)) "
                             "with M workers; see prospect_sim.fit.queue_size)")

    for name in _OPTION_MODULES:
        module = _optional_module(name)
        if module is not None and hasattr(module, "add_arguments"):
            module.add_arguments(parser)
    return parser


def _optional_module(name):
    """Import ``name`` if it exists yet; an ImportError inside it is not hidden."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and name.startswith(err.name):
            return None
        raise


# --- choosing the mode ------------------------------------------------------

def selected_mode(run_params):
    """The one mode the flags ask for (``"fit"`` for any of the fitters).

    Raises
    ------
    UsageError
        For no mode, two modes, or both ``--emcee`` and ``--dynesty``.
    """
    chosen = [m for m in MODES if m not in ("fit", "catalog_fit") and run_params.get(m)]
    fitters = [f for f in FIT_FLAGS if run_params.get(f)]
    if fitters:
        fit_kind(run_params)                # refuses two samplers
        chosen.append("fit")
    if not chosen:
        raise UsageError("no mode given; choose one of --simulate, --dynesty, --emcee, "
                         "--optimize, --train, --infer, --validate")
    if len(chosen) > 1:
        names = [f"--{m}" for m in chosen if m != "fit"] + [f"--{f}" for f in fitters]
        raise UsageError(f"{' and '.join(names)} were given together; run one mode at a time")
    return chosen[0]


def _output_kind(mode, run_params):
    if mode == "fit":
        return fit_kind(run_params) + ("_catalog" if run_params.get("catalog") else "")
    return {"simulate": "sims", "train": "flow", "infer": "posterior"}.get(mode)


def check_run_params(run_params, mode):
    """Everything that can be checked before building anything.

    Raises
    ------
    UsageError
        Out-of-range numbers, inputs that do not exist, outputs that would be
        replaced without ``--overwrite``/``--resume``.
    """
    from . import outputs
    if run_params.get("n_samples") is not None and run_params["n_samples"] <= 0:
        raise UsageError(f"--n_samples must be a positive number of draws, "
                         f"got {run_params['n_samples']}")
    if run_params.get("workers") is not None and run_params["workers"] < 1:
        raise UsageError(f"--workers must be at least 1, got {run_params['workers']}")
    if run_params.get("queue_size") is not None and run_params["queue_size"] < 1:
        raise UsageError(f"--queue_size must be at least 1, got {run_params['queue_size']}")
    if run_params.get("overwrite") and run_params.get("resume"):
        raise UsageError("--overwrite and --resume were both given; choose one")
    if mode in ("train", "validate") or (mode == "infer" and run_params.get("simfile")):
        outputs.require_existing(outputs.path_for(run_params, "sims"), "--simfile",
                                 "simulation file (made by --simulate)")
    if mode in ("infer", "validate") and not run_params.get("resume"):
        outputs.require_existing(outputs.path_for(run_params, "flow"), "--checkpoint",
                                 "network checkpoint (made by --train)")
    if run_params.get("catalog") and mode not in ("fit", "infer"):
        raise UsageError(f"--catalog is read by --infer and by the fitters (--dynesty, "
                         f"--nautilus, --emcee, --optimize), not by --{mode}")
    if mode == "fit":
        SAMPLERS[fit_kind(run_params)].require()
    kind = _output_kind(mode, run_params)
    if kind is not None:
        catalog_fit = mode == "fit" and bool(run_params.get("catalog"))
        resumable = catalog_fit or not (mode == "fit" and not SAMPLERS[kind].resumes)
        if run_params.get("resume") and not resumable:
            resumers = ", ".join(f"--{n}" for n, s in SAMPLERS.items() if s.resumes)
            raise UsageError(f"--resume continues {resumers}, --simulate and --train runs; "
                             f"an --{kind} run restarts from a previous chain with "
                             f"--restart_from FILE")
        outputs.check_writable(outputs.path_for(run_params, kind), run_params,
                               resumable=resumable)


# --- main -------------------------------------------------------------------

def _calling_namespace():
    """Globals of the parameter file that called ``main()``.

    The nearest frame outside this package (the parameter file's module
    level or its ``__main__`` block), else the ``__main__`` module.
    """
    package = str(Path(__file__).resolve().parent)
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not str(Path(filename).resolve()).startswith(package) and "build_model" in frame.f_globals:
            return frame.f_globals
        frame = frame.f_back
    return vars(sys.modules["__main__"])


def _configure_logging(quiet, verbose=1):
    level = logging.WARNING if quiet else logging.INFO
    root = logging.getLogger("prospect_sim")
    root.setLevel(level)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("prospect_sim: %(message)s"))
        root.addHandler(handler)
    root.propagate = False


def _fail(err, show_traceback):
    from .pool import launcher_rank
    if launcher_rank() > 0:      # under mpiexec only the master reports
        return 2 if isinstance(err, ProspectSimError) else 1
    if show_traceback:
        import traceback
        if getattr(err, "worker_traceback", None):
            sys.stderr.write("the worker's traceback:\n" + err.worker_traceback)
        traceback.print_exception(type(err), err, err.__traceback__)
    else:
        text = " ".join(str(err).split())
        if not isinstance(err, ProspectSimError):
            text = f"{type(err).__name__}: {text} (run with --traceback for details)"
        sys.stderr.write(f"prospect_sim: error: {text}\n")
    sys.stderr.flush()
    return 2 if isinstance(err, ProspectSimError) else 1


def main(parser=None, argv=None, paramfile=None):
    """Run the calling parameter file in the mode its command line asks for.

    Parameters
    ----------
    parser : argparse.ArgumentParser, optional
        A parser the file built itself (from :func:`get_parser`); default: a
        new :func:`get_parser` plus the file's ``add_arguments(parser)``.
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).
    paramfile : ParamFile or str, optional
        The parameter file (default: the caller's module).

    Returns
    -------
    str
        The path written (also printed as the last line of stdout). Errors
        exit the program (status 2 for usage and parameter-file errors).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    show_tb = "--traceback" in argv
    try:
        from . import paramfile as _paramfile
        if paramfile is None:
            pfile = _paramfile.ParamFile.from_namespace(_calling_namespace())
        elif isinstance(paramfile, (str, Path)):
            pfile = _paramfile.load(paramfile)
        else:
            pfile = paramfile
        if parser is None:
            parser = get_parser()
            pfile.add_arguments(parser)
        args = parser.parse_args(argv)
        return run(vars(args), pfile)
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - turned into one line and a status
        if isinstance(err, KeyboardInterrupt):
            sys.stderr.write("prospect_sim: interrupted\n")
            sys.exit(130)
        sys.exit(_fail(err, show_tb))


def run(run_params, pfile):
    """Check, open the pool, build on every process, and dispatch the mode."""
    from . import pool as _pool
    run_params = dict(run_params)
    run_params["param_file"] = pfile.path
    _configure_logging(run_params.get("quiet"))
    if run_params.get("quiet"):
        run_params["verbose"] = 0
    mode = selected_mode(run_params)
    check_run_params(run_params, mode)
    runner, prepare, n_tasks = _import_runner(MODES["catalog_fit" if mode == "fit" and
                                                    run_params.get("catalog") else mode])

    def build():
        ingredients = pfile.build(run_params)
        if prepare is not None:       # e.g. --simulate fills the sps's tables once
            prepare(ingredients)
        return ingredients

    tasks = None if n_tasks is None else n_tasks(run_params)
    with _pool.open_pool(run_params, build, tasks=tasks) as workpool:
        ingredients = _pool.ingredients()
        if run_params.get("debug"):
            log.info("--debug: built obs, model and sps; stopping before %s", mode)
            return None
        if mode in ("simulate", "fit"):
            from .effects import check_free_parameters
            check_free_parameters(ingredients)      # no free parameter that changes nothing
        log.info("%s: %s with %s (%d worker%s)", pfile.name, mode, workpool.kind,
                 workpool.size, "" if workpool.size == 1 else "s")
        path = runner(ingredients, workpool)
    sys.stdout.flush()
    print(path, flush=True)
    return path


def _import_runner(spec):
    module_name, func = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise UsageError(f"this mode needs {module_name}, which is not installed "
                             f"in this version of prospect_sim") from err
        raise
    return getattr(module, func), getattr(module, "prepare", None), getattr(module, "n_tasks",
                                                                            None)


# --- the prospect-sim tool --------------------------------------------------

def _info(pfile, argv):
    parser = get_parser()
    pfile.add_arguments(parser)
    run_params = vars(parser.parse_args(argv))
    run_params["param_file"] = pfile.path
    ing = pfile.build(run_params)
    model, obs = ing.model, ing.obs
    lines = [f"parameter file: {pfile.path}",
             f"sps: {type(ing.sps).__name__} ({run_params.get('sps_library')})",
             f"free parameters ({model.ndim}):"]
    for name in model.free_params:
        prior = model.config_dict[name].get("prior")
        lines.append(f"  {name:12s} init={model.params[name]} prior={prior}")
    fixed = [n for n in model.params if n not in model.free_params]
    lines.append(f"fixed parameters: {', '.join(fixed)}")
    if callable(getattr(ing.sps, "components", None)):
        lines.append("components:")
        varying = list(model.free_params) + [n for n, c in model.config_dict.items()
                                             if callable(c.get("depends_on"))]
        lines += [f"  {c}" for c in ing.sps.components(model.params, varying)]
    if obs.get("filters") is not None:
        names = [getattr(f, "name", str(f)) for f in obs["filters"]]
        lines.append(f"photometry: {len(names)} bands: {', '.join(names)}")
    if obs.get("spectrum") is not None:
        lines.append(f"spectrum: {len(obs['spectrum'])} pixels")
    lines.append(f"noise: {ing.noise}; obs_noise: {type(ing.obs_noise).__name__}")
    from . import outputs
    lines.append("outputs: " + ", ".join(outputs.path_for(run_params, k)
                                         for k in ("sims", "dynesty", "flow", "posterior")))
    print("\n".join(lines))
    return 0


def _describe_file(path):
    """``info`` on a non-Python file: a simulation file (:mod:`prospect_sim.info`) or a catalogue fit."""
    if not Path(path).is_file():
        raise UsageError(f"{path} does not exist; give a parameter file (.py) or a "
                         f"simulation file (.h5)")
    from . import catalog_fit
    if catalog_fit.is_fit_table(path):
        print(catalog_fit.describe(path))
        return 0
    from .info import describe
    print(describe(path))
    return 0


def tool_main(argv=None):
    """``prospect-sim {info,run} FILE [flags]`` (also ``python -m prospect_sim``).

    ``info FILE.py`` summarises a parameter file (builders, parameters, priors,
    bands, output paths); ``info FILE.h5`` describes and checks a simulation
    file; ``run FILE.py --MODE`` runs a parameter file like ``python FILE.py``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    usage = ("usage: prospect-sim info FILE.py [flags]   summarise a parameter file\n"
             "       prospect-sim info FILE.h5           describe and check a simulation file\n"
             "       prospect-sim run FILE.py --MODE [flags]   run it (like python FILE.py --MODE)\n")
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in ("info", "run") or not rest or rest[0].startswith("-"):
        sys.stderr.write(f"prospect-sim: error: expected 'info FILE' or 'run FILE', "
                         f"got {' '.join(argv[:2])!r}\n")
        return 2
    show_tb = "--traceback" in rest
    try:
        from . import paramfile as _paramfile
        if command == "info" and not rest[0].endswith(".py"):
            return _describe_file(rest[0])
        pfile = _paramfile.load(rest[0])
        if command == "run":
            main(argv=rest[1:], paramfile=pfile)
            return 0
        return _info(pfile, rest[1:])
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except BaseException as err:  # noqa: BLE001
        if isinstance(err, KeyboardInterrupt):
            return 130
        return _fail(err, show_tb)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(tool_main())
