"""``build_sps(name)``: the stellar-population source behind ``--sps``.

- ``"grid"`` (default): :class:`~prospect_sim.sps.grid.GridSPS` over the
  embedded BC03 library; runs on a fresh machine.
- ``"fsps"``: Prospector's ``prospect.sources.CSPSpecBasis(zcontinuous=1)``,
  exact Prospector/FSPS behaviour; needs ``$SPS_HOME`` with FSPS's data.
"""

from ..errors import SPSError
from .loaders import fsps_available, fsps_missing_message

__all__ = ["build_sps", "fsps_available", "fsps_missing_message", "SPS_CHOICES"]

SPS_CHOICES = ("grid", "fsps")


def build_sps(name="grid", **kwargs):
    """Build the sps object selected by ``name``.

    Parameters
    ----------
    name : str
        ``"grid"`` or ``"fsps"``.
    **kwargs
        ``library`` and ``wave_range`` for ``"grid"``; keywords of
        ``CSPSpecBasis`` for ``"fsps"``.  Other keywords (a whole
        ``run_params`` dict) are ignored.

    Returns
    -------
    GridSPS or prospect.sources.CSPSpecBasis
    """
    if name in (None, "grid"):
        from .grid import GridSPS
        opts = {k: kwargs[k] for k in ("library", "wave_range") if kwargs.get(k) is not None}
        return GridSPS(**opts)
    if name == "fsps":
        if not fsps_available():
            raise SPSError(fsps_missing_message())
        try:
            from prospect.sources import CSPSpecBasis
            return CSPSpecBasis(zcontinuous=kwargs.get("zcontinuous", 1))
        except (ImportError, RuntimeError, NameError) as err:
            raise SPSError(f"--sps fsps: python-fsps could not start ({err}). "
                           + fsps_missing_message()) from err
    raise SPSError(f"--sps {name!r} is not a stellar-population source: expected one of "
                   f"{', '.join(SPS_CHOICES)}.")
