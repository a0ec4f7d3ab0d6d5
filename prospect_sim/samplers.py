"""The classical fitters behind one table: flag, output, resumability, runner.

``--optimize``, ``--emcee`` and ``--dynesty`` are Prospector's own flags;
``--nautilus`` is this package's (:mod:`prospect_sim.nautilus_fit`).  The
command line (which flags select a fit, which may ``--resume``), the
output paths and :func:`prospect_sim.fit.run` read this table; a new
sampler is one entry here and its runner module (with its
``add_arguments`` listed in :data:`prospect_sim.cli` option modules).

>>> [name for name, s in SAMPLERS.items() if s.resumes]
['dynesty', 'nautilus']
"""

from dataclasses import dataclass

from .errors import UsageError

__all__ = ["Sampler", "SAMPLERS", "fit_kind"]


@dataclass(frozen=True)
class Sampler:
    """One classical fitter.

    Attributes
    ----------
    name : str
        Its flag (``--name``) and output kind (``BASE_name.h5``).
    resumes : bool
        Whether ``--resume`` continues an interrupted run (from the output
        kind ``name + "_checkpoint"``).
    runner : str or None
        ``"module:function"`` running it as
        ``function(ingredients, workpool, checkpoint, run_params) -> (results, seconds)``
        with ``results`` a dict of dynesty's keys (written by
        :func:`prospect_sim.fit.run`); None for the fitters that go through
        Prospector's ``fit_model`` (or its dynesty options) in :mod:`prospect_sim.fit`.
    batched : bool
        Whether it evaluates blocks of points through the batched
        log-posterior (:mod:`prospect_sim.likelihood`; emcee: its walkers,
        without workers, :class:`prospect_sim.fit.BatchMap`).
    package : tuple of str or None
        (module it needs, the ``pip install`` argument that brings it).
    """

    name: str
    resumes: bool
    runner: str = None
    batched: bool = False
    package: tuple = None

    def require(self):
        """Raise :class:`~prospect_sim.errors.UsageError` naming the ``pip install`` it needs."""
        if self.package is None:
            return
        import importlib
        module, pip = self.package
        try:
            importlib.import_module(module)      # the run imports it anyway
        except ImportError as err:
            raise UsageError(f"--{self.name} needs the {module} package, which cannot be "
                             f"imported ({err}): pip install {pip}") from err


#: In order of precedence when several are given with ``--optimize``.
SAMPLERS = {
    "dynesty": Sampler("dynesty", resumes=True, package=("dynesty", "'dynesty<3'")),
    "nautilus": Sampler("nautilus", resumes=True, runner="prospect_sim.nautilus_fit:run_sampler",
                        batched=True, package=("nautilus", "nautilus-sampler")),
    "emcee": Sampler("emcee", resumes=False, batched=True, package=("emcee", "emcee")),
    "optimize": Sampler("optimize", resumes=False),
}


def fit_kind(run_params):
    """Output kind of a fit: the sampler given, else ``"optimize"``.

    Raises
    ------
    UsageError
        With no fitter, or two samplers.
    """
    chosen = [name for name in SAMPLERS if name != "optimize" and run_params.get(name)]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join('--' + c for c in chosen)} were both given; choose "
                         "one sampler (--optimize may be combined with it)")
    if chosen:
        return chosen[0]
    if run_params.get("optimize"):
        return "optimize"
    raise UsageError("no fitter given; choose " + ", ".join("--" + n for n in SAMPLERS))
