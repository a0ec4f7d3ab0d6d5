"""The task protocol and this process's ingredients, shared by every pool.

``build()`` runs once in every process and :func:`ingredients` returns what
it built there; tasks are small because the pickler (:func:`dumps_task`)
replaces the ingredients' heavy objects (sps, model, obs, noise) by a
persistent id that the receiving process resolves to its own.  A task runs
through :func:`run_task` wherever it runs: errors come back as data
(:func:`unwrap` raises :class:`~prospect_sim.errors.WorkerError` on the
master), and what a task prints is held until it ends.  :class:`Pool` is
the interface every pool implements (``map``, ``imap_unordered``, ``size``,
``close``); :class:`SerialPool` runs everything here.  The MPI pool and
:func:`~prospect_sim.pool.open_pool` are in :mod:`prospect_sim.pool`, local
worker processes in :mod:`prospect_sim.processes`.
"""

import contextlib
import io
import logging
import pickle
import sys
import traceback

from .errors import ProspectSimError, WorkerError

__all__ = ["ingredients", "substituted", "built", "set_ingredients", "set_build_error",
           "dumps_task", "loads_task", "run_task", "error_text", "unwrap", "payloads",
           "Pool", "SerialPool", "one_blas_thread"]

log = logging.getLogger(__name__)

# --- this process's ingredients ---------------------------------------------

_INGREDIENTS = None
_BUILD_ERROR = None
_PERSISTENT = {}          # id(object) -> name, for the pickler


def built():
    """Whether this process has built its ingredients (a forked worker inherits them)."""
    return _INGREDIENTS is not None


def ingredients():
    """The :class:`~prospect_sim.paramfile.Ingredients` built in this process.

    Raises
    ------
    RuntimeError
        Outside a pool (nothing was built in this process).
    """
    if _INGREDIENTS is None:
        raise RuntimeError("no ingredients were built in this process; "
                           "call it inside prospect_sim.pool.open_pool(...)")
    return _INGREDIENTS


@contextlib.contextmanager
def substituted(ing):
    """Inside the block, :func:`ingredients` of this process is ``ing``.

    For work on variants of the ingredients built (a catalogue row's obs in
    place of the parameter file's); tasks sent to other processes inside
    the block would still resolve to *their* built ingredients.
    """
    previous = _INGREDIENTS
    set_ingredients(ing)
    try:
        yield ing
    finally:
        set_ingredients(previous)


def set_ingredients(ing):
    global _INGREDIENTS
    _INGREDIENTS = ing
    _PERSISTENT.clear()
    if ing is None:
        return
    named = {"ingredients": ing, "obs": ing.obs, "model": ing.model, "sps": ing.sps,
             "noise": ing.noise, "obs_noise": ing.obs_noise}
    if ing.noise is not None:
        named.update({"spec_noise": ing.noise[0], "phot_noise": ing.noise[1]})
    for name, obj in named.items():
        if obj is not None:
            _PERSISTENT.setdefault(id(obj), name)


def set_build_error(err):
    """Remember why this worker could not build: its tasks report it to the master."""
    global _BUILD_ERROR
    _BUILD_ERROR = error_text(err)


def _resolve(name):
    ing = ingredients()
    if name == "ingredients":
        return ing
    if name == "spec_noise":
        return ing.noise[0]
    if name == "phot_noise":
        return ing.noise[1]
    return getattr(ing, name)


class _TaskPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return _PERSISTENT.get(id(obj))


class _TaskUnpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        return _resolve(pid)


def dumps_task(obj):
    """Pickle ``obj`` with this process's ingredients replaced by their names.

    >>> import pickle
    >>> len(dumps_task((abs, -1))) < 100
    True
    """
    buf = io.BytesIO()
    _TaskPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def loads_task(blob):
    return _TaskUnpickler(io.BytesIO(blob)).load()


def run_task(payload):
    """Worker side of every task: resolve, call, and report errors as data."""
    func_blob, arg_blob = payload
    try:
        if _BUILD_ERROR is not None:
            return ("error", _BUILD_ERROR)
        func = loads_task(func_blob)
        arg = loads_task(arg_blob)
    except BaseException as err:  # noqa: BLE001 - reported to the master, never swallowed
        if isinstance(err, KeyboardInterrupt):
            raise
        return ("error", error_text(err))
    printed = io.StringIO()
    try:
        # what the task prints waits until it ends: dynesty prints a traceback for every
        # failing likelihood call, which belongs with the error, not on the terminal
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            result = func(arg)
    except BaseException as err:  # noqa: BLE001 - reported to the master, never swallowed
        if isinstance(err, KeyboardInterrupt):
            sys.stderr.write(printed.getvalue())
            raise
        msg, tb = error_text(err)
        return ("error", (msg, printed.getvalue() + tb))
    sys.stdout.write(printed.getvalue())
    return ("ok", result)


def error_text(err):
    name = type(err).__name__
    msg = str(err) if isinstance(err, ProspectSimError) else f"{name}: {err}"
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return (msg, tb)


def unwrap(results, where):
    out = []
    for status, value in results:
        if status != "ok":
            msg, tb = value
            log.debug("worker traceback:\n%s", tb)
            err = WorkerError(f"a worker ({where}) failed: {msg}")
            err.worker_traceback = tb   # shown by --traceback
            raise err
        out.append(value)
    return out


def payloads(func, tasks):
    func_blob = dumps_task(func)
    for task in tasks:
        yield (func_blob, dumps_task(task))


# --- pools ------------------------------------------------------------------

def _no_pool():
    return None


class Pool:
    """The interface of every pool; a pool pickles to ``None``.

    ``map(func, tasks)`` (ordered list), ``imap_unordered(func, tasks)``
    (iterator in completion order), ``size`` (processes doing the work),
    ``close()``; ``kind`` names it ("serial", "processes", "mpi").

    dynesty keeps the pool inside its likelihood wrapper, which it sends with
    every task and saves in every checkpoint; a worker needs no pool of its own.
    """

    def __reduce__(self):
        return (_no_pool, ())


class SerialPool(Pool):
    """Everything in this process. ``size`` is 1."""

    kind = "serial"
    size = 1

    def map(self, func, tasks):
        """Ordered list of ``func(task)``."""
        return [func(task) for task in tasks]

    def imap_unordered(self, func, tasks):
        """Iterator over ``func(task)``, one at a time."""
        for task in tasks:
            yield func(task)

    def close(self):
        pass


def one_blas_thread():
    """One BLAS thread per process (serial runs included).

    With as many processes as cores, multi-threaded OpenBLAS oversubscribes
    them: on the 2-core development machine the demo likelihood took 20 ms
    per call with OpenBLAS's default threads and 2.9 ms with one. Uses
    ``threadpoolctl`` when installed (a no-op otherwise).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        log.debug("threadpoolctl not installed; BLAS threads left as they are")
        return
    threadpool_limits(limits=1, user_api="blas")
