"""Where the work runs: MPI ranks, local processes, or this process.

:func:`open_pool` picks, in order:

1. schwimmbad's ``MPIPool`` when the program was launched by ``mpiexec`` /
   ``mpirun`` with more than one rank (rank 0 is the master; the other ranks
   build their ingredients, serve tasks and exit, never returning);
2. local worker processes for ``--workers N`` with N > 1
   (:class:`~prospect_sim.processes.ProcessPool`);
3. serial otherwise (:class:`~prospect_sim.tasks.SerialPool`).

The task protocol and this process's ingredients, which every pool
shares, are in :mod:`prospect_sim.tasks` (``ingredients``, ``substituted``
and ``SerialPool`` are importable from here too).

``build()`` is called once in every process, and the result is what
:func:`ingredients` returns there. Tasks are small: heavy objects (sps, model,
obs, noise) are never pickled into them. When a task function or argument
refers to this process's ingredients (as Prospector's ``functools.partial(
lnprobfn, obs=obs, model=model, sps=sps)`` and dynesty's bound
``model.prior_transform`` do), the pickler replaces them by a persistent id
("model", "sps", ...) that the receiving process resolves to the ingredients
it built itself. A builder must therefore be deterministic given
``run_params`` (as in Prospector's own MPI recipe).

A task that raises in a worker comes back as an error record; the master
raises :class:`~prospect_sim.errors.WorkerError` with the worker's message,
and every rank stops with a non-zero status (a local worker that dies does
the same: see :mod:`prospect_sim.processes`). mpi4py is imported only when
an MPI launcher is detected.
"""

import contextlib
import logging
import os
import sys
import time

from .errors import ProspectSimError, WorkerError
from .tasks import (Pool, SerialPool, dumps_task, error_text, ingredients, one_blas_thread,
                    payloads, run_task, set_build_error, set_ingredients, substituted, unwrap)
from .tasks import _no_pool  # noqa: F401 - dynesty checkpoints from before the move name it here

__all__ = ["open_pool", "ingredients", "substituted", "mpi_launched", "launcher_rank",
           "SerialPool", "MPIWorkPool", "dumps_task"]

log = logging.getLogger(__name__)

#: Environment variables set by MPI launchers (MPICH/Hydra, Open MPI, PMIx, Slurm).
_MPI_ENV = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK",
            "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")

_WORKER_EXIT_STATUS = 0   # what a non-master MPI rank exits with


def _set_worker_exit_status(status):
    global _WORKER_EXIT_STATUS
    _WORKER_EXIT_STATUS = int(status)
    return status


#: Longest sleep between two probes of a waiting rank, in seconds (see :func:`_wait_until`).
_POLL_MAX_SLEEP = 5e-4


def _wait_until(ready):
    """Wait until ``ready()`` is true without spinning a core.

    MPICH's blocking calls busy-wait, and on a machine with as many ranks as
    cores (or more: master + 2 workers on 2 cores) a spinning rank takes a core
    from the ranks that compute. Between probes this sleeps 20 us, doubling up
    to :data:`_POLL_MAX_SLEEP`, so a message is seen at most that late; a
    waiting rank wakes at most ~2,000 times a second (~10 us of CPU each).
    """
    delay = 2e-5
    while not ready():
        time.sleep(delay)
        delay = min(_POLL_MAX_SLEEP, 2 * delay)


def _poll(comm, source):
    """Wait for a message from ``source`` (see :func:`_wait_until`)."""
    from mpi4py import MPI
    if not comm.Iprobe(source=source, tag=MPI.ANY_TAG):
        _wait_until(lambda: comm.Iprobe(source=source, tag=MPI.ANY_TAG))


def _run_chunk(payload):
    """Worker side of a chunk of tasks: ``(func_blob, [arg_blob, ...])`` -> one record.

    One message carries many small tasks (e.g. the derived quantities of
    every posterior sample), so the message latency is paid once per chunk.
    """
    func_blob, arg_blobs = payload
    results = []
    for arg_blob in arg_blobs:
        status, value = run_task((func_blob, arg_blob))
        if status != "ok":
            return (status, value)
        results.append(value)
    return ("ok", results)


def _make_mpi_pool_class():
    from schwimmbad import MPIPool

    class _PoliteMPIPool(MPIPool):
        """schwimmbad's MPIPool whose workers wait politely (same protocol).

        Workers wait for tasks with :func:`_poll` and send results with
        ``isend`` and :func:`_wait_until` instead of a busy-waiting ``ssend``.
        """

        def wait(self, callback=None):
            from mpi4py import MPI
            if self.is_master():
                return
            status = MPI.Status()
            while True:
                _poll(self.comm, self.master)
                task = self.comm.recv(source=self.master, tag=MPI.ANY_TAG, status=status)
                if task is None:
                    break
                func, arg = task
                # schwimmbad's ssend would busy-wait until the master receives
                request = self.comm.isend(func(arg), self.master, status.tag)
                _wait_until(request.Test)
            if callback is not None:
                callback()

    return _PoliteMPIPool


class MPIWorkPool(Pool):
    """The master's side of schwimmbad's ``MPIPool`` (rank 0; ``size`` = ranks - 1).

    Messages go out with schwimmbad's protocol (``(func, arg)`` tagged with a
    slot number, answered with the same tag), at most a fixed number per rank
    at a time, so memory stays bounded whatever the number of tasks.
    ``map`` sends a long list of tasks in chunks (:data:`CHUNKS_PER_WORKER`
    per rank) and keeps two messages queued at each rank, so a rank starts its
    next chunk without waiting for the master; ``imap_unordered`` sends one
    task per message and one message per rank at a time.
    """

    kind = "mpi"

    #: ``map`` of n tasks sends chunks of ``ceil(n / (CHUNKS_PER_WORKER * size))`` tasks.
    CHUNKS_PER_WORKER = 8

    def __init__(self, pool):
        self._pool = pool
        self.size = pool.size

    @property
    def comm(self):
        return self._pool.comm

    def _dispatch(self, messages, per_worker):
        """Send ``(runner, payload)`` messages; yield ``(index, result)`` as results arrive.

        Raises WorkerError with the first worker's message, after every
        pending reply has been received.
        """
        from mpi4py import MPI
        comm = self.comm
        workers = sorted(self._pool.workers)
        slots = [w for _ in range(per_worker) for w in workers]   # round robin
        pending = {}                 # tag -> (message index, worker)
        error = None
        messages = enumerate(messages)
        free_tags = list(range(len(slots)))
        try:
            while True:
                while slots and error is None:
                    item = next(messages, None)
                    if item is None:
                        break
                    index, message = item
                    worker, tag = slots.pop(0), free_tags.pop()
                    comm.send(message, dest=worker, tag=tag)
                    pending[tag] = (index, worker)
                if not pending:
                    break
                _poll(comm, MPI.ANY_SOURCE)
                status = MPI.Status()
                result = comm.recv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
                index, worker = pending.pop(status.tag)
                free_tags.append(status.tag)
                slots.append(worker)
                if result[0] != "ok":
                    error = error or result
                elif error is None:
                    yield index, result[1]
        finally:
            while pending:           # never leave a reply behind for the next call
                _poll(comm, MPI.ANY_SOURCE)
                status = MPI.Status()
                comm.recv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
                pending.pop(status.tag, None)
        if error is not None:
            unwrap([error], "MPI rank")

    def map(self, func, tasks):
        """Ordered list of ``func(task)`` computed by the other ranks.

        Each rank gets chunks of consecutive tasks in one message (one task
        per message when there are no more tasks than ranks, as in dynesty's
        ``queue_size = size`` proposals).
        """
        tasks = list(tasks)
        chunk = max(1, -(-len(tasks) // (self.CHUNKS_PER_WORKER * self.size)))
        func_blob = dumps_task(func)
        messages = ((_run_chunk, (func_blob, [dumps_task(t) for t in tasks[i:i + chunk]]))
                    for i in range(0, len(tasks), chunk))
        results = [None] * len(tasks)
        for index, values in self._dispatch(messages, per_worker=2):
            results[index * chunk:index * chunk + len(values)] = values
        return results

    def imap_unordered(self, func, tasks):
        """Results as they arrive, one task in flight per rank (bounded memory)."""
        messages = ((run_task, payload) for payload in payloads(func, tasks))
        for _, value in self._dispatch(messages, per_worker=1):
            yield value

    def set_worker_exit_status(self, status):
        """Tell every other rank which status to exit with once it is released."""
        from mpi4py import MPI
        comm = self.comm
        for worker in sorted(self._pool.workers):
            comm.send((_set_worker_exit_status, status), dest=worker, tag=0)
        for _ in self._pool.workers:
            comm.recv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG)

    def close(self):
        self._pool.close()
        # schwimmbad registers close() again at exit; a second round of stop
        # messages to ranks that are gone makes MPICH exit with status 9.
        self._pool.workers = set()


# --- choosing and opening ---------------------------------------------------

def mpi_launched():
    """Whether an MPI launcher started this process (checked without importing mpi4py)."""
    return any(os.environ.get(v) for v in _MPI_ENV)


def launcher_rank():
    """This process's MPI rank as the launcher set it (0 when not under MPI)."""
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        value = os.environ.get(var)
        if value is not None and value.isdigit():
            return int(value)
    return 0


def _exit_status(err):
    if err is None:
        return 0
    return 2 if isinstance(err, ProspectSimError) else 1


def useful_workers(workers, tasks=None, cores=None):
    """``workers`` cut to the tasks there are and to the cores (twice over), warning if cut.

    Up to twice the cores are allowed (processes that wait on I/O or on the
    master); more only share the same cores, each with its own copy of the
    tables, and one per task is all a run can use.

    >>> useful_workers(4, tasks=2, cores=8)
    2
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    limit = 2 * cores if tasks is None else min(2 * cores, max(int(tasks), 1))
    if workers > limit:
        why = (f"this run has {tasks} task{'s' if tasks != 1 else ''}"
               if tasks is not None and tasks < 2 * cores else
               f"this machine gives the run {cores} core{'s' if cores != 1 else ''}")
        log.warning("--workers %d: %s; using %d worker process%s", workers, why, limit,
                    "" if limit == 1 else "es")
        return limit
    return workers


@contextlib.contextmanager
def open_pool(run_params, build, tasks=None):
    """Open the pool this run asks for and build the ingredients in every process.

    Parameters
    ----------
    run_params : dict
        Reads ``workers`` (local processes when > 1).
    build : callable
        ``build() -> Ingredients`` for the calling process.
    tasks : int or None
        How many tasks the run has at most, when known: ``--workers``
        beyond it, or beyond the cores this process may use, is cut to
        what can help, with one warning (:func:`useful_workers`).

    Yields
    ------
    SerialPool or ProcessPool or MPIWorkPool
        With ``size``, ``map(func, tasks)`` and ``imap_unordered(func, tasks)``.
        Non-master MPI ranks never get here: they serve and exit.
    """
    if mpi_launched():
        from mpi4py import MPI
        if MPI.COMM_WORLD.Get_size() > 1:
            with _open_mpi(build) as pool:
                yield pool
            return
    workers = useful_workers(int(run_params.get("workers") or 1), tasks)
    one_blas_thread()  # serial too: GridSPS's small matrix products lose to BLAS threading
    set_ingredients(build())
    try:
        if workers > 1:
            from .processes import ProcessPool
            pool = ProcessPool(workers, build)
            try:
                yield pool
            except BaseException:
                pool.terminate()
                raise
            else:
                pool.close()
        else:
            yield SerialPool()
    finally:
        set_ingredients(None)


@contextlib.contextmanager
def _open_mpi(build):
    from mpi4py import MPI
    MPIPool = _make_mpi_pool_class()
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    one_blas_thread()
    error = None
    try:
        set_ingredients(build())
    except Exception as err:  # every rank learns about it below
        error = err
        set_build_error(err)
    # one collective step: every rank knows whether every rank could build
    statuses = comm.allgather(None if error is None else
                              (error_text(error)[0], _exit_status(error)))
    failed = [(r, s) for r, s in enumerate(statuses) if s is not None]
    if failed:
        if rank != 0:
            sys.exit(max(s[1] for _, s in failed))
        if error is not None:
            raise error
        r, (msg, _) = failed[0]
        raise WorkerError(f"MPI rank {r} failed to build its ingredients: {msg}")

    if rank != 0:
        try:
            MPIPool(comm)          # serves until the master closes, then sys.exit(0)
        except SystemExit:
            pass
        sys.stdout.flush()
        sys.exit(_WORKER_EXIT_STATUS)

    pool = MPIWorkPool(MPIPool(comm))
    log.info("MPI pool: master + %d worker ranks", pool.size)
    try:
        yield pool
    except BaseException as err:
        with contextlib.suppress(Exception):
            pool.set_worker_exit_status(_exit_status(err) or 1)
        raise
    finally:
        pool.close()
        set_ingredients(None)
