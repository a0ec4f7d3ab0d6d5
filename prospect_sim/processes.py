"""Local worker processes for ``--workers N``: forked, watched, ended with the master.

Where processes are forked, the workers inherit the ingredients the master
built (and warmed) before the fork; elsewhere each builds its own.  Two
things multiprocessing alone gets wrong are handled here: a worker that
dies (a signal, the out-of-memory killer) would be replaced silently while
the master waited for ever for the task it held, so the master watches its
workers and raises :class:`~prospect_sim.errors.WorkerError`; and a master
killed outright would leave its workers to finish their task and die on a
broken pipe with a traceback, so they end with it.
"""

import collections
import logging
import os
import sys

from .errors import WorkerError
from .tasks import (Pool, built, one_blas_thread, payloads, run_task, set_build_error,
                    set_ingredients, unwrap)

__all__ = ["ProcessPool"]

log = logging.getLogger(__name__)

#: Seconds between checks that every local worker is alive, while waiting.
_WATCH_S = 0.2


def _end_with_master(master):
    """Have this worker end at once, and quietly, when its master ends.

    A master killed outright (``kill -9``, the out-of-memory killer) would
    otherwise leave its workers to finish their chunk and die on a broken
    pipe with a traceback.  On Linux the kernel sends the worker SIGTERM
    when the master ends (a parent-death signal); and on any POSIX system a
    result written to the dead master's pipe ends the worker by SIGPIPE
    instead of raising ``BrokenPipeError`` (the kernel closes the pipe an
    instant before it signals).  ``master`` is None where the pool was
    opened outside the master's main thread: the parent-death signal comes
    when the forking *thread* ends.
    """
    import signal
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if master is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)             # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError) as err:
        log.debug("cannot ask for a parent-death signal (%s)", err)
        return
    if os.getppid() != master:                             # it ended before the call
        os.kill(os.getpid(), signal.SIGTERM)


def _main_thread_pid():
    import threading
    return os.getpid() if threading.current_thread() is threading.main_thread() else None


def _process_initializer(build, master):
    """Start a local worker; ``build`` None: it inherited the master's ingredients (fork)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_master(master)
    one_blas_thread()
    if build is None:
        return
    try:
        set_ingredients(build())
    except Exception as err:  # reported by the first task this worker gets
        set_build_error(err)


def _build_ok(_):
    return "built"


class ProcessPool(Pool):
    """``--workers N`` local processes.

    Where processes are forked (Linux, macOS with fork available) the
    workers inherit the ingredients the master built (and warmed) before
    the fork: built once, their arrays shared copy-on-write, no start-up
    per worker.  Elsewhere (spawn) each worker calls ``build`` itself.
    Either way tasks carry only small data.

    Parameters
    ----------
    processes : int
        Number of worker processes.
    build : callable
        Returns this process's ingredients; called once in each spawned worker.
    """

    kind = "processes"

    def __init__(self, processes, build):
        import multiprocessing
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        inherit = ctx.get_start_method() == "fork" and built()
        self.size = int(processes)
        self._pool = ctx.Pool(self.size, initializer=_process_initializer,
                              initargs=(None if inherit else build, _main_thread_pid()))
        # multiprocessing replaces a dead worker silently and waits for ever
        # for the task it held; these are the workers to watch instead
        self._workers = list(self._pool._pool)
        try:
            # every worker reports a failed build with the first task it gets
            self.map(_build_ok, range(self.size))
        except BaseException:
            self.terminate()
            raise

    def map(self, func, tasks):
        """Ordered list of ``func(task)`` computed by the workers."""
        pending = self._pool.map_async(run_task, list(payloads(func, tasks)), chunksize=1)
        return unwrap(self._get(pending), "local process")

    def imap_unordered(self, func, tasks):
        """Results as they are ready, at most ``2 * size`` tasks in flight."""
        window = collections.deque()
        for payload in payloads(func, tasks):
            window.append(self._pool.apply_async(run_task, (payload,)))
            if len(window) >= 2 * self.size:
                yield unwrap([self._get(window.popleft())], "local process")[0]
        while window:
            yield unwrap([self._get(window.popleft())], "local process")[0]

    def _get(self, pending):
        """``pending.get()``, raising WorkerError if a worker has died meanwhile."""
        while not pending.ready():
            pending.wait(_WATCH_S)
            for worker in self._workers:
                if worker.exitcode is not None:
                    raise WorkerError(_death_text(worker))
        return pending.get()

    def close(self):
        self._pool.close()
        self._pool.join()

    def terminate(self):
        self._pool.terminate()
        self._pool.join()


def _death_text(worker):
    code = worker.exitcode
    if code < 0:
        import signal
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
        if -code == getattr(signal, "SIGKILL", None):
            how += " (the out-of-memory killer sends it when memory runs out)"
    else:
        how = f"exited with status {code}"
    return f"local worker process {worker.pid} {how}; the task it held is lost"
