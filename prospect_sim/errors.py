"""Exception types of prospect_sim.

Every error that a user can cause (a broken parameter file, a bad argument, a
file that does not match) is raised as a subclass of :class:`ProspectSimError`
with a message that says what was received, what was expected and how to fix
it. The command line turns these into one line on stderr and exit status 2.
"""

__all__ = ["ProspectSimError", "UsageError", "ParamFileError", "SPSError", "NotBatchedError",
           "SimulationError", "StoreError", "FitError", "TrainingError",
           "InferenceError", "WorkerError"]


class ProspectSimError(Exception):
    """Base class of every error prospect_sim raises on purpose."""


class UsageError(ProspectSimError):
    """Command-line arguments that cannot work together or are out of range."""


class ParamFileError(ProspectSimError):
    """A parameter file that is missing a builder, or whose builder failed."""


class SPSError(ProspectSimError):
    """A stellar-population library that is missing, unreadable or used out of range."""


class NotBatchedError(SPSError):
    """Parameters the batched photometry cannot take, although the per-object path can.

    For example an ``igm_factor`` that differs between the objects of a
    batch with an AGN (its tables are built per value).  Callers that have the per-object
    path (``SpecModel.predict``) fall back to it.
    """


class SimulationError(ProspectSimError):
    """A simulation run that cannot start or continue."""


class StoreError(ProspectSimError):
    """A simulation HDF5 file that is missing, corrupt or does not match."""


class FitError(ProspectSimError):
    """A classical fit that cannot start, resume or be written."""


class TrainingError(ProspectSimError):
    """Training data, options or checkpoints that cannot be used."""


class InferenceError(ProspectSimError):
    """A checkpoint or catalogue that cannot be used for inference."""


class WorkerError(ProspectSimError):
    """An exception raised in a worker process, re-raised on the master."""
