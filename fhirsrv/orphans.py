"""A child process that must not outlive its parent: the loader's workers, the server's workers
and its heavy-request pool. Told when the parent ends, however it ends (kill -9 included): killed
at once, or sent a signal to clean up first (the heavy pool's manager), so no process keeps a
database connection or a socket after the server has gone."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

# prctl(2) option: the signal the kernel sends a process when its parent dies.
PR_SET_PDEATHSIG = 1
# Where prctl is missing, how often a child checks that its parent is still there (seconds).
ORPHAN_CHECK_INTERVAL = 1.0


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> None:
    """`signum` sent to this process as soon as `parent` ends: SIGKILL (the default) to end at
    once, another for a process that has something to clean up (it must handle it).

    On Linux the kernel sends it (PR_SET_PDEATHSIG) when the parent's thread that forked this
    process ends. Fork from a thread that lives as long as the parent does, or expect it when
    that thread ends; then `os.getppid()` may still name the parent for a moment (the kernel
    gives the child to the parent's other threads while they are still ending). Elsewhere a
    daemon thread polls the parent pid. Checked once after arming, for a parent that ended
    before: then `signum` is sent at once."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(ORPHAN_CHECK_INTERVAL)
            os.kill(os.getpid(), signum)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)
