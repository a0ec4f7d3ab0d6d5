"""Ctrl-C is not lost when a finaliser swallows it (prospect_sim.interrupt)."""

import os
import signal
import threading

import pytest

from prospect_sim.interrupt import interruptible


def _ctrl_c_swallowed():
    """SIGINT to this process, its KeyboardInterrupt caught and dropped, as Python
    does when it lands in a weakref callback ("Exception ignored in ...")."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a point where the handler runs
    except KeyboardInterrupt:
        return True
    return False


def test_a_swallowed_ctrl_c_is_raised_at_the_next_check():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with interruptible() as check:
            check()                      # nothing yet
            assert _ctrl_c_swallowed()
            check()                      # raises again
    assert signal.getsignal(signal.SIGINT) is before


def test_outside_the_main_thread_check_does_nothing():
    seen = []

    def run():
        with interruptible() as check:
            check()
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [signal.getsignal(signal.SIGINT)]
