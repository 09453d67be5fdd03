"""SIGINT held back while a block runs, so that a Ctrl-C cannot interrupt it half way."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigint_held_back() -> Iterator[None]:
    """Block SIGINT in this thread while the block runs: a Ctrl-C meanwhile stays pending and
    arrives when the block ends (POSIX keeps a blocked signal pending, even while its handler is
    ``SIG_IGN`` on Linux). Processes started in the block inherit the blocked mask."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
