"""How a command's process ends: on SIGINT or SIGTERM, promptly and with nothing left running.

Both signals raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, so every
``finally`` runs: a search shuts down the Ray it started (its worker processes with it) and
releases its output lock; done records already written stay, and the same command resumes.
Ray Tune's own SIGINT handler (which lets ``Tuner.fit`` return as if finished) is turned off:
an interrupted search must not write a trials table or ``best.json``.

Under ``dvc repro`` a stage also watches DVC: DVC ignores SIGINT while a stage runs (a terminal's
Ctrl-C reaches the stage itself), but a SIGTERM or SIGKILL to DVC alone would leave the stage
and its Ray workers running; the stage stops itself within a second of DVC's end.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from pipeline.errors import ConfigError

EXIT_BAD_INPUT = 2


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: int | None = None  # the signal being handled (Ray may re-raise it as a plain
# KeyboardInterrupt: its blocking calls turn an exception from a handler into their own)


def _raise(signum, frame) -> None:
    global _received
    _received = signum
    # once: a second signal while the first unwinds must not cut the clean-up short
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


_installed = False


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (call it there)."""
    global _installed
    _installed = True
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _raise)


def reinstall_signal_handlers() -> None:
    """Again, after a library (``ray.init``) replaced them; only where a command installed
    them (a library call inside someone else's program leaves its handlers alone)."""
    if _installed and threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(s) is not signal.SIG_IGN:  # not while unwinding an interrupt
                signal.signal(s, _raise)


def _dvc_ancestor() -> int | None:
    """The ``dvc`` process this stage runs under (through the shell DVC starts), if any."""
    if "DVC_STAGE" not in os.environ:
        return None
    import psutil

    for parent in psutil.Process().parents():
        try:
            if any("dvc" in os.path.basename(part) for part in parent.cmdline()[:2]):
                return parent.pid
        except psutil.Error:
            continue
    return None


def watch_parent(pid: int, interval_s: float = 0.5) -> threading.Thread:
    """SIGTERM this process when process ``pid`` ends (a daemon thread polls it)."""
    import psutil

    born = psutil.Process(pid).create_time()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            try:
                alive = (psutil.Process(pid).create_time() == born
                         and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
            except psutil.NoSuchProcess:
                alive = False
            if not alive:
                print(f"the parent process {pid} (dvc) has ended: stopping", file=sys.stderr,
                      flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="watch-parent", daemon=True)
    thread.start()
    return thread


def run_command(main: Callable[[], int | None]) -> int:
    """Run a command's ``main``: signals handled, a bad input an ``error:`` line and exit 2
    (never a traceback), an interrupt exit 128 + the signal's number."""
    install_signal_handlers()
    dvc = _dvc_ancestor()
    if dvc is not None:
        watch_parent(dvc)
    try:
        return main() or 0
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        signum = _received or signal.SIGINT
        print(f"interrupted by {signal.Signals(signum).name}: stopped; finished work is kept, "
              "and the same command resumes", file=sys.stderr, flush=True)
        return 128 + signum
