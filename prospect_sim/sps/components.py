"""The components of the embedded SPS, in the order they enter the light.

Each is a :class:`~.component.Component` defined in its own module; this
tuple is the one place that lists them.  :mod:`.params` reads their
parameters, :class:`~.kernel.SpectralKernel` and
:class:`~.photometry.PhotometryKernel` apply them, :class:`~.grid.GridSPS`
describes them and :mod:`prospect_sim.forward` stores their extras, all by
looping over it.

>>> [c.name for c in COMPONENTS]
['nebular emission', 'dust emission', 'AGN']
"""

from .agn import AGN
from .dust_emission import DustEmission
from .nebular import Nebular

__all__ = ["COMPONENTS", "parameters", "uses"]

#: Nebular light is attenuated with the stars that ionise it; the dust then
#: re-emits what it absorbed (lines included); the AGN is not attenuated.
COMPONENTS = (Nebular(), DustEmission(), AGN())


def parameters():
    """Every component's float parameters and their FSPS defaults (dict)."""
    out = {}
    for component in COMPONENTS:
        out.update(component.parameters)
    return out


def uses():
    """Parameter (or prefix ending in ``_``) -> what gives it an effect, of every component."""
    out = {}
    for component in COMPONENTS:
        out.update(component.uses)
    return out
