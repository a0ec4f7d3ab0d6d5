"""Amortised neural posteriors: ``--train``, ``--infer`` and ``--validate``.

A conditional normalizing flow (zuko) is trained on the simulation file of a
parameter file, with observational noise drawn afresh every epoch from a noise
model, and then gives posterior samples for the parameter file's obs or for a
whole catalogue in milliseconds per galaxy.

Modules (torch is imported only inside this package, and never by
:mod:`~prospect_sim.amortized.options` or :mod:`~prospect_sim.amortized.noise`):

- :mod:`.options`      command-line flags (imports nothing heavy)
- :mod:`.noise`        observational noise models (numpy; param files build them)
- :mod:`.features`     photometry -> network input; feature normalisation
- :mod:`.transforms`   prior bounds <-> unbounded space (torch bijection)
- :mod:`.flows`        the conditional flow on an embedding network
- :mod:`.data`         the simulation file, streamed in shuffled blocks
- :mod:`.spec`         what a checkpoint records about the problem
- :mod:`.train`        ``--train``
- :mod:`.catalog`      catalogue readers (CSV, HDF5, FITS), streamed
- :mod:`.infer`        ``--infer`` (with optional importance sampling)
- :mod:`.diagnostics`  coverage, SBC ranks, TARP, plots
- :mod:`.validate`     ``--validate``

Importing this package is cheap; import the submodule you need.
"""
