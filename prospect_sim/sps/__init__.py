"""Embedded stellar populations: :class:`GridSPS` over an :class:`SSPLibrary`.

``GridSPS()`` has Prospector's sps interface (``get_galaxy_spectrum``,
``get_galaxy_elines``, ``wavelengths``, ``ssp.libraries``) and batched
kernels (``spectra``, ``photometry``, ``sfh_properties``); see
:mod:`prospect_sim.sps.grid`.  ``build_sps("grid" | "fsps")`` picks the
source behind ``--sps``.  Importing this package also lets
``prospect.models.SpecModel`` be built without ``$SPS_HOME``
(:mod:`prospect_sim.sps._compat`).
"""

from . import _compat

_compat.install()

from .grid import GridSPS  # noqa: E402
from .library import SSPLibrary  # noqa: E402
from .loaders import load_library  # noqa: E402
from .select import build_sps  # noqa: E402

__all__ = ["GridSPS", "SSPLibrary", "load_library", "build_sps"]
