"""SIGINT held back while a block runs: a Ctrl-C in the block arrives when it ends."""

from __future__ import annotations

import signal
import threading

import pytest

from pertlearn.signals import sigint_held_back


def test_a_ctrl_c_in_the_block_arrives_when_it_ends() -> None:
    reached_the_end = False
    with pytest.raises(KeyboardInterrupt):
        with sigint_held_back():
            # to this thread: a signal to the process may be taken by another of its threads
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            assert signal.SIGINT in signal.sigpending()
            reached_the_end = True
    assert reached_the_end
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_the_mask_is_restored_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="inside"):
        with sigint_held_back():
            raise RuntimeError("inside")
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
