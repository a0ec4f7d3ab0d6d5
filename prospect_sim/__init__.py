"""prospect_sim: one Prospector parameter file to simulate, fit and train.

Public entry points (everything else is private and free to change):

- :func:`main`: the two-line ``__main__`` block of a parameter file.
- :func:`get_parser`: Prospector's parser plus prospect_sim's flags.

Importing the package is cheap: torch, mpi4py and the SPS grids are loaded
only by the modes that need them. It also makes ``prospect.models.SpecModel``
constructible without ``$SPS_HOME`` (see :mod:`prospect_sim.sps`).
"""

__version__ = "0.1.0"

from .sps import _compat as _sps_compat

# Let prospect.models.SpecModel be built without $SPS_HOME (cheap: imports nothing).
_sps_compat.install()
__all__ = ["main", "get_parser", "__version__"]


def get_parser(*args, **kwargs):
    """Prospector's argument parser with prospect_sim's flags added."""
    from .cli import get_parser as _get_parser
    return _get_parser(*args, **kwargs)


def main(parser=None, argv=None):
    """Run the calling parameter file in the mode its command line asks for."""
    from .cli import main as _main
    return _main(parser=parser, argv=argv)
