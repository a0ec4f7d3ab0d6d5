"""Ctrl-C that cannot be lost in a long loop.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main
thread happens to be. When that is inside a finaliser or a weakref callback
(the garbage collector runs them at arbitrary points), Python prints
"Exception ignored in ..." and carries on: the interrupt is lost and the run
goes to the end. :func:`interruptible` also records the signal, so the loop
raises it at its next check.

>>> with interruptible() as check:
...     check()          # no signal: nothing happens
"""

import signal
import threading
from contextlib import contextmanager

__all__ = ["interruptible"]


@contextmanager
def interruptible():
    """Within the block SIGINT raises ``KeyboardInterrupt`` as usual and is also
    remembered; the yielded ``check()`` raises it again if it was swallowed.
    Outside the main thread (where handlers cannot be set) ``check`` does nothing."""
    hit = threading.Event()

    def on_sigint(signum, frame):
        hit.set()
        raise KeyboardInterrupt

    def check():
        if hit.is_set():
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield check
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)
